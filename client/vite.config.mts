// Vite build of the browser client: client/ is the root, the bundle goes to client/dist, which the
// server serves (src/http/static.ts). The page runs under a CSP without inline script or style,
// so nothing may be inlined into index.html.
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  base: '/',
  publicDir: false,
  // Views are Preact components written in TSX (docs/client.md, "UI library").
  esbuild: { jsx: 'automatic', jsxImportSource: 'preact' },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    // The polyfill would be an inline <script>, which script-src 'self' refuses.
    modulePreload: { polyfill: false },
    // No data: URLs for assets: everything is a same-origin file with a hashed name.
    assetsInlineLimit: 0,
    sourcemap: false,
    chunkSizeWarningLimit: 600,
    // Two pages: the staff app, and the patient's follow-up page (its own small bundle, carrying
    // nothing of the case UI).
    rollupOptions: {
      input: {
        main: fileURLToPath(new URL('index.html', import.meta.url)),
        followup: fileURLToPath(new URL('followup.html', import.meta.url)),
      },
    },
  },
});
