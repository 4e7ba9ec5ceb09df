// lock.locked is exact when read. A holder paused (SIGSTOP: a long GC, a
// frozen container) for longer than its ttl reads `false` on its very first
// read after it resumes, before any background task has had a chance to
// run, and never `true` again; meanwhile another process took the key.
import { describe, it, expect } from 'vitest'
import path from 'node:path'
import { useLocker, startNode, sleep, root } from '../support/suite.mjs'

const fixture = path.join(root, '__test__', 'fixtures', 'paused.mjs')
// A ttl of 4 s: a refresh delayed by a loaded machine must not end the lock
// before the pause (with 2 s, a holder once read false before it was stopped).
const TTL = 4000
const PAUSE = TTL + 1500
const monotonicMs = () => Number(process.hrtime.bigint() / 1000n) / 1000

describe('a holder paused past its ttl', () => {
  const t = useLocker('pause', { ttlMs: TTL })

  it('reads locked === false at its first read after resuming; the key was taken meanwhile', async () => {
    const run = startNode(fixture, [t.ctx.name, 'k', String(TTL), String(300 + PAUSE + 1500)])
    await run.waitFor('ready')
    await sleep(300)
    run.child.kill('SIGSTOP')
    const stoppedAt = monotonicMs()
    const mine = await t.locker.lock('k', { waitMs: PAUSE })
    const takenAt = monotonicMs()
    expect(mine).not.toBeNull()
    await sleep(Math.max(0, stoppedAt + PAUSE - monotonicMs()))
    run.child.kill('SIGCONT')
    const { reads, aborted, freed } = await run.waitFor('result', 20_000)
    await run.exited

    const gap = reads.findIndex(([at], i) => i > 0 && at - reads[i - 1][0] > 1000)
    expect(gap).toBeGreaterThan(0) // the pause is in the record
    expect(reads.slice(0, gap).every(([, locked]) => locked)).toBe(true)
    expect(reads.slice(gap).every(([, locked]) => !locked)).toBe(true) // the first read after resuming included
    const lastTrue = reads[gap - 1][0]
    expect(lastTrue).toBeLessThan(takenAt) // no overlap of beliefs
    expect(aborted).toBe(true)
    expect(freed).toBe(false)
    expect(mine.locked).toBe(true)
    await mine.free()
  })
})
