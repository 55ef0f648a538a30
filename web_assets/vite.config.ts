// Build settings for the dashboard bundle that tqd serves at "/".
//
// The output in dist/ is committed and must be reproducible byte for byte
// from `npm ci && npm run build`: no timestamps, no absolute paths, and
// content-hashed file names only.
import { defineConfig } from "vitest/config";

export default defineConfig({
  // Relative URLs, so the app also works behind a proxy under a sub-path.
  base: "./",
  esbuild: {
    jsx: "automatic",
    jsxImportSource: "preact",
    legalComments: "none",
  },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    sourcemap: false,
    modulePreload: { polyfill: false },
    reportCompressedSize: true,
    chunkSizeWarningLimit: 200,
  },
  test: {
    include: ["src/**/*.test.ts"],
  },
});
