// No two holders when a wall clock steps (NTP, `chronyc makestep`, a VM
// resumed, a manual `date`): server time is anchored to the monotonic clock,
// so a step never enters an expiry decision. Each child's wall clock is
// stepped while it runs (libfaketime's timestamp file, monotonic clock
// untouched), after it has connected and read the server's clock: the case
// a clock sync at connect time cannot see. ttl 4 s, refreshed every 600 ms.
import { it, expect, beforeEach, afterEach } from 'vitest'
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { useLocker, startNode, steppedClockEnv, describeWithFaketime, root } from '../support/suite.mjs'

const fixture = path.join(root, '__test__', 'fixtures', 'stepped.mjs')
const TTL = 4000

// libfaketime: scripts/install-faketime.sh puts it in .tools (.ci/run runs
// it), or the system's. CI must run these tests; without it elsewhere, one
// skipped test says what is not checked.
const guarantee = 'no two holders when a client\'s wall clock steps (±5 s) while it runs'
describeWithFaketime(import.meta.url, guarantee)('wall-clock steps while running', () => {
  const t = useLocker('step', { ttlMs: TTL, refreshMs: 600 })
  let dir
  let clockFile
  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'mongo-locks-step-'))
    clockFile = path.join(dir, 'clock')
    writeFileSync(clockFile, '+0')
  })
  afterEach(() => rmSync(dir, { recursive: true, force: true }))

  it('a taker whose clock steps 5 s forward does not take over a live lock', async () => {
    const held = await t.locker.lock('live')
    const run = startNode(fixture, ['take', t.ctx.name, 'live', String(TTL), '+5s', '3000'], { env: steppedClockEnv(clockFile) })
    expect((await run.waitFor('stepped')).byMs).toBeGreaterThan(4900)
    const result = await run.waitFor('result', 20_000)
    expect(result.acquired).toBe(false)
    expect(result.afterMs).toBeGreaterThanOrEqual(3000) // it really tried, for the whole wait
    expect(held.locked).toBe(true)
    expect(t.locker.stats().lost).toBe(0)
    const { code, stderr } = await run.exited
    expect(code, stderr).toBe(0)
  })

  it('a holder whose clock steps 5 s back keeps its lock alive on the server, and nobody else gets it', async () => {
    const run = startNode(fixture, ['hold', t.ctx.name, 'mine', String(TTL), '-5s', '6000'], { env: steppedClockEnv(clockFile) })
    expect((await run.waitFor('stepped')).byMs).toBeLessThan(-4900)
    // More than a ttl of trying while it holds: its refreshes must keep
    // writing expiries in server time, not 5 s in the past.
    expect(await t.locker.lock('mine', { waitMs: 4500 })).toBeNull()
    const doc = await t.ctx.collection.findOne({ action: 'mine' })
    expect(doc.expiresAt.getTime()).toBeGreaterThan(Date.now()) // this process and the server share a clock
    const result = await run.waitFor('result', 20_000)
    expect(result).toMatchObject({ falseReads: 0, lost: false, freed: true })
    expect(result.reads).toBeGreaterThan(100)
    const { code, stderr } = await run.exited
    expect(code, stderr).toBe(0)
  })
})
