import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['__test__/**/*.test.mjs', 'examples/**/*.test.mjs'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Two cores here; the multi-process tests spawn their own workers.
    maxWorkers: 2,
  },
})
