import { defineConfig } from "vite";

// The build goes where Go embeds it (internal/console). `npm run dev`
// serves the console with hot reload against a server on :8080.
export default defineConfig({
  build: {
    outDir: "../internal/console/dist/app",
    emptyOutDir: true,
    target: "es2020",
    // Leaflet and its plugins (the maps) take the bundle past 300 kB.
    chunkSizeWarningLimit: 600,
  },
  server: {
    proxy: {
      "/api": "http://127.0.0.1:8080",
      "/metrics": "http://127.0.0.1:8080",
    },
  },
});
