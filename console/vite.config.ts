/**
 * The console's build. The only settings that differ between a local stack and a real Supabase
 * project are VITE_SUPABASE_URL and VITE_SUPABASE_ANON_KEY (read at build time, as every Vite
 * app on Supabase does); CONSOLE_OUT_DIR moves the output (the tests build into .local).
 */
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

const root = fileURLToPath(new URL('.', import.meta.url));

export default defineConfig({
  root,
  // JSX through esbuild's automatic runtime: no React plugin needed for a production build.
  esbuild: { jsx: 'automatic' },
  build: {
    outDir: process.env.CONSOLE_OUT_DIR ?? fileURLToPath(new URL('../.local/console-dist', import.meta.url)),
    emptyOutDir: true,
    chunkSizeWarningLimit: 1024,
    // zod's bundled comments trip a harmless Rollup notice on every build.
    rollupOptions: { onwarn: (warning, warn) => { if (warning.code !== 'INVALID_ANNOTATION') warn(warning); } },
  },
  server: { port: Number(process.env.CONSOLE_PORT ?? 54323), strictPort: true, host: '127.0.0.1' },
  preview: { port: Number(process.env.CONSOLE_PORT ?? 54323), strictPort: true, host: '127.0.0.1' },
  logLevel: 'warn',
});
