// Crash recovery without the TTL monitor: a lock whose expiresAt has passed
// is taken over by the next lock(); a live one never is.
import { describe, it, expect, afterEach, beforeEach } from 'vitest'
import path from 'node:path'
import { freshCollection, lib, runNode, root, sleep } from '../support/suite.mjs'

describe('takeover of expired locks', () => {
  let ctx
  beforeEach(async () => { ctx = await freshCollection('takeover') })
  afterEach(async () => { await ctx.close() })

  it('a holder killed with SIGKILL: another process gets the key within ttl + one refresh interval of the last refresh, not sooner', async () => {
    // A refresh interval long enough that the bound is about the library
    // (the waiter's next try after the expiry, a backoff step of at most
    // 250 ms, and three round trips), not about a loaded machine's scheduling.
    const [ttl, refresh] = [2000, 1000]
    const holder = path.join(root, '__test__', 'fixtures', 'hold-and-die.mjs')
    const holdMs = Math.floor(Math.random() * refresh) // die at some point between refreshes
    const waiter = new lib.LockManager(ctx.collection, { ttlMs: ttl, refreshMs: refresh })
    try {
      const run = await runNode(holder, [ctx.name, 'crashed-key', String(ttl), String(refresh), String(holdMs)])
      expect(run.signal).toBe('SIGKILL')
      const { refreshedAt, createdAt } = await ctx.collection.findOne({ action: 'crashed-key' })
      expect(refreshedAt.getTime()).toBeGreaterThan(createdAt.getTime()) // it was refreshed before dying
      const lock = await waiter.lock('crashed-key', { waitMs: 10_000 })
      const gotAt = Date.now()
      expect(lock).not.toBeNull()
      const sinceLastRefresh = gotAt - refreshedAt.getTime()
      expect(sinceLastRefresh).toBeGreaterThanOrEqual(ttl)
      expect(sinceLastRefresh).toBeLessThanOrEqual(ttl + refresh)
      expect(waiter.stats().takenOver).toBe(1)
    } finally {
      await waiter.close()
    }
  })

  it('takes over a document left by stock mongo-locks once it expired', async () => {
    const past = new Date(Date.now() - 1000)
    await ctx.collection.insertOne({ action: 'old', createdAt: past, refreshedAt: past, expiresAt: past })
    const locker = new lib.LockManager(ctx.collection)
    try {
      expect(await locker.lock('old')).not.toBeNull()
      expect(await ctx.collection.countDocuments({ action: 'old' })).toBe(1)
    } finally {
      await locker.close()
    }
  })

  it('never takes over a live lock, even one close to expiry', async () => {
    const locker = new lib.LockManager(ctx.collection)
    await locker.ready // connected first: the 2 s below are for lock() alone
    const soon = new Date(Date.now() + 2000)
    await ctx.collection.insertOne({ action: 'live', createdAt: new Date(), refreshedAt: new Date(), expiresAt: soon })
    try {
      expect(await locker.lock('live')).toBeNull()
      expect(await ctx.collection.countDocuments({ action: 'live', expiresAt: soon })).toBe(1)
    } finally {
      await locker.close()
    }
  })

  it('a refreshed lock outlives its ttl: the background refresh keeps it from being taken over', async () => {
    const a = new lib.LockManager(ctx.collection, { ttlMs: 1000, refreshMs: 150 })
    const b = new lib.LockManager(ctx.collection, { ttlMs: 1000 })
    try {
      const held = await a.lock('kept-alive')
      await sleep(2500)
      expect(await b.lock('kept-alive')).toBeNull()
      expect(held.locked).toBe(true)
    } finally {
      await a.close()
      await b.close()
    }
  })

  it('two managers racing for one expired lock: exactly one wins', async () => {
    const past = new Date(Date.now() - 1000)
    await ctx.collection.insertOne({ action: 'race', createdAt: past, refreshedAt: past, expiresAt: past })
    const managers = Array.from({ length: 6 }, () => new lib.LockManager(ctx.collection))
    try {
      const results = await Promise.all(managers.map((m) => m.lock('race')))
      expect(results.filter(Boolean)).toHaveLength(1)
      expect(await ctx.collection.countDocuments({ action: 'race' })).toBe(1)
    } finally {
      await Promise.all(managers.map((m) => m.close()))
    }
  })
})
