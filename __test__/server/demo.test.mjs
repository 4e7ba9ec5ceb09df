// `npm run demo`, as a new user runs it: it ends well, and prints no warning
// or error of ours (on the test server, which has no TTL indexes, nothing
// is wrong: a line there would be noise in a backend's logs).
import { describe, it, expect } from 'vitest'
import path from 'node:path'
import { root, runNode } from '../support/suite.mjs'

describe('the demo', () => {
  it('shows who held what, finds no overlap, and prints no warning', async () => {
    const run = await runNode(path.join(root, 'demo', 'run.mjs'), [], { env: { SKIP_BUILD: '1' }, timeoutMs: 120_000 })
    expect(run.code, run.stderr).toBe(0)
    expect(run.stdout).toMatch(/✓ no two holders of a key overlapped/)
    expect(run.stdout).toMatch(/36 critical sections by 4 processes on 3 keys/)
    expect(run.stderr).toBe('')
    expect(run.stdout).not.toMatch(/mongo-locks-native:|warn/i)
  })
})
