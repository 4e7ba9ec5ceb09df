import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['__test__/**/*.test.mjs', 'examples/**/*.test.mjs'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Two cores here; the multi-process tests spawn their own workers.
    maxWorkers: 2,
    // Concurrent tests within a file (it.concurrent): failures.test.mjs
    // runs its two dozen cases at once, each mostly waiting out the 10 s
    // operation timeout, not working.
    maxConcurrency: 32,
  },
})
