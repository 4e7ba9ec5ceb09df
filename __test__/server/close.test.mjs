// close(): frees what the manager holds, stops the refresh, closes the
// connections, and leaves nothing that keeps Node running.
import { describe, it, expect, afterEach, beforeEach } from 'vitest'
import path from 'node:path'
import { freshCollection, lib, runNode, root } from '../support/suite.mjs'

const { LockManager, MongoLocksError } = lib
const fixture = path.join(root, '__test__', 'fixtures', 'close-and-exit.mjs')

describe('close()', () => {
  let ctx
  beforeEach(async () => { ctx = await freshCollection('close') })
  afterEach(async () => { await ctx.close() })

  it('frees held locks, turns them unlocked, and refuses new work', async () => {
    const locker = new LockManager(ctx.collection)
    const a = await locker.lock('a')
    const b = await locker.lock('b')
    expect(await ctx.collection.countDocuments()).toBe(2)
    await locker.close()
    expect(a.locked).toBe(false)
    expect(b.locked).toBe(false)
    expect(await ctx.collection.countDocuments()).toBe(0)
    expect(await a.free()).toBe(false)
    const err = await locker.lock('c').catch((e) => e)
    expect(err).toBeInstanceOf(MongoLocksError)
    expect(err.message).toMatch(/LockManager is closed/)
    expect(err.closed).toBe(true)
    await locker.close() // twice is fine
  })

  it('a caller waiting for a key when close() runs is rejected as closed, not left waiting', async () => {
    const locker = new LockManager(ctx.collection)
    const other = new LockManager(ctx.collection)
    try {
      await other.lock('held-elsewhere')
      // close() now wakes the waiter at once, so its rejection can land
      // before close() resolves: take it as it comes.
      let rejectedAt
      const waiting = locker.lock('held-elsewhere', { waitMs: 30_000 }).catch((e) => { rejectedAt = Date.now(); return e })
      await new Promise((r) => setTimeout(r, 200))
      const closedAt = Date.now()
      await locker.close()
      const err = await waiting
      expect(err).toBeInstanceOf(MongoLocksError)
      expect(err.message).toMatch(/LockManager is closed/)
      expect(err.closed).toBe(true)
      // The waiter's rejection, not close() (which also shuts the driver down).
      expect(rejectedAt - closedAt).toBeLessThan(1000)
    } finally {
      await other.close()
    }
  })

  it('a process that closes its manager exits by itself at once, with its locks gone', async () => {
    const run = await runNode(fixture, [ctx.name, 'close'], { timeoutMs: 20_000 })
    expect(run.code, run.stderr).toBe(0)
    expect(JSON.parse(run.stdout)).toEqual({ locked: [false, false, false] })
    expect(await ctx.collection.countDocuments()).toBe(0)
    expect(run.ms).toBeLessThan(15_000)
  })

  it('the background refresh alone does not keep a process alive (unlike one timer per lock)', async () => {
    const run = await runNode(fixture, [ctx.name, 'leave'], { timeoutMs: 20_000 })
    expect(run.code, run.stderr).toBe(0)
    // Not freed: they stay until they expire, as a crash would leave them.
    expect(await ctx.collection.countDocuments()).toBe(3)
  })
})
