/**
 * Headless Chromium from Debian's package, driven by playwright-core, kept off the network
 * (no background fetches, no component updates, no sync). Shared by the browser tests, the
 * screenshot script and the benchmark.
 */
import { chromium, type Browser } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
}
