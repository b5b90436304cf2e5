// Builds dist/ (index.html, app.js, app.css) from src/. The output is
// deterministic: the same sources and lockfile give the same bytes.
import { build } from 'esbuild';
import { copyFile, mkdir, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, 'dist');

const common = {
  absWorkingDir: here,
  bundle: true,
  minify: true,
  sourcemap: false,
  charset: 'utf8',
  legalComments: 'none',
  logLevel: 'warning',
  outdir: dist,
  target: ['es2020', 'chrome100', 'firefox100', 'safari15'],
};

await rm(dist, { recursive: true, force: true });
await mkdir(dist, { recursive: true });
await build({
  ...common,
  entryPoints: { app: 'src/main.ts' },
  format: 'iife',
  platform: 'browser',
  define: { 'process.env.NODE_ENV': '"production"' },
  metafile: false,
});
await build({ ...common, entryPoints: { app: 'src/app.css' } });
await copyFile(join(here, 'src/index.html'), join(dist, 'index.html'));
