/**
 * What the browser tests and the benchmark need around the database: the PostgREST stand-in
 * on a free port, the console built for it and served on another, Chromium, and sign-in links.
 * Node-only; never part of the console's bundle.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import pg from 'pg';
import { serveStandin } from '../../standins/postgrest/server.ts';
import { sessionLink } from '../local-session.ts';
import { anonKey, buildConsole, serveConsole } from '../serve.ts';
import { launchChromium } from './browser.ts';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface ConsoleStack {
  url: string;
  apiUrl: string;
  browser: Browser;
  /** A new browser context signed in as the user (through the local session link). */
  signIn(user: { id: string; email: string }): Promise<{ context: BrowserContext; page: Page }>;
  close(): Promise<void>;
}

export async function startConsoleStack(pool: pg.Pool, jwtSecret: string): Promise<ConsoleStack> {
  const localDir = process.env.MCP_LOCAL_DIR ?? path.join(ROOT, '.local');
  const outDir = path.join(localDir, 'console-dist-test');
  const api = await serveStandin({ pool, jwtSecret, port: 0 });
  await buildConsole(outDir, api.url, await anonKey(jwtSecret));
  const site = await serveConsole(outDir, 0);
  const browser = await launchChromium();
  return {
    url: site.url,
    apiUrl: api.url,
    browser,
    async signIn(user) {
      const context = await browser.newContext({ viewport: { width: 1200, height: 760 } });
      const page = await context.newPage();
      await page.goto(await sessionLink(site.url, user, jwtSecret, 1));
      await page.waitForSelector('header.top .who', { timeout: 20_000 });
      return { context, page };
    },
    async close() {
      await browser.close().catch(() => undefined);
      await site.close().catch(() => undefined);
      await api.close().catch(() => undefined);
    },
  };
}

/** Opens a screen by its path and waits until its data is loaded. */
export async function openScreen(page: Page, base: string, screen: 'organization' | 'servers' | 'agents' | 'audit' | 'connections'): Promise<void> {
  await page.goto(`${base}/${screen}`);
  await page.waitForSelector(`[data-screen="${screen}"][data-ready]`, { timeout: 20_000 });
}
