import { defineConfig } from 'vite';

// The console is served by nimbus under /console/ (embedded in the binary, or from
// NIMBUS_CONSOLE_DIR). Everything it needs ships in dist/: no CDN, no web fonts.
export default defineConfig({
  base: '/console/',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    sourcemap: false,
    chunkSizeWarningLimit: 700,
    rollupOptions: {
      output: {
        // Shared editor libraries would be named after their file (dist/index.js).
        chunkFileNames: (chunk) => (chunk.name === 'dist' || chunk.name === 'index' ? 'assets/editor-lib-[hash].js' : 'assets/[name]-[hash].js'),
      },
    },
  },
  server: {
    // `npm run dev` against a nimbus on the default port.
    proxy: {
      '/console/api': 'http://127.0.0.1:4566',
      '/console/aws': 'http://127.0.0.1:4566',
      '/console/login': 'http://127.0.0.1:4566',
      '/_nimbus': 'http://127.0.0.1:4566',
    },
  },
});
