// Crash recovery without the TTL monitor: a lock whose expiresAt has passed
// is taken over by the next lock(); a live one never is.
import { describe, it, expect, afterEach, beforeEach } from 'vitest'
import path from 'node:path'
import { freshCollection, lib, runNode, root, sleep } from './support.mjs'

describe('takeover of expired locks', () => {
  let ctx
  beforeEach(async () => { ctx = await freshCollection('takeover') })
  afterEach(async () => { await ctx.close() })

  it('a crashed holder (killed, no free) loses its key one ttl after its last refresh, not before', async () => {
    // The holder takes the key with a 1.5 s ttl, prints, then is SIGKILLed.
    const holder = path.join(root, '__test__', 'fixtures', 'hold-and-die.mjs')
    const run = await runNode(holder, [ctx.name, 'crashed-key', '1500'])
    expect(run.signal).toBe('SIGKILL')
    const { expiresAt } = await ctx.collection.findOne({ action: 'crashed-key' })

    const locker = new lib.LockManager(ctx.collection, { ttlMs: 1500 })
    try {
      if (Date.now() < expiresAt.getTime() - 300) expect(await locker.lock('crashed-key')).toBeNull()
      await sleep(Math.max(0, expiresAt.getTime() - Date.now()) + 50)
      const lock = await locker.lock('crashed-key')
      expect(lock).not.toBeNull()
      const docs = await ctx.collection.find({ action: 'crashed-key' }).toArray()
      expect(docs).toHaveLength(1)
      expect(docs[0]._id.toHexString()).toBe(lock.id)
    } finally {
      await locker.close()
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
    const soon = new Date(Date.now() + 2000)
    await ctx.collection.insertOne({ action: 'live', createdAt: new Date(), refreshedAt: new Date(), expiresAt: soon })
    const locker = new lib.LockManager(ctx.collection)
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
