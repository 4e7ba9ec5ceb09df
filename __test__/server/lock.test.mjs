// The core contract of mongo-locks, against the real server: acquire,
// contention, free, refresh, `locked` after the document vanishes, and the
// same documents and indexes as mongo-locks.
import { describe, it, expect } from 'vitest'
import { ObjectId } from 'mongodb'
import { lib, eventually, useLocker, usePrivateServer } from '../support/suite.mjs'

const { LockManager, Lock } = lib

describe('LockManager.lock', () => {
  const t = useLocker()

  it('acquires a free key and stores the document mongo-locks stores', async () => {
    const before = Date.now()
    const lock = await t.locker.lock('bank-details-42')
    expect(lock).toBeInstanceOf(Lock)
    expect(lock.locked).toBe(true)
    expect(lock.action).toBe('bank-details-42')
    expect(lock.id).toMatch(/^[0-9a-f]{24}$/)

    const docs = await t.ctx.collection.find().toArray()
    expect(docs).toHaveLength(1)
    const [doc] = docs
    // mongo-locks' fields, plus who holds it (extra fields mongo-locks ignores).
    expect(Object.keys(doc)).toEqual(['_id', 'action', 'createdAt', 'refreshedAt', 'expiresAt', 'holder'])
    expect(doc._id.toHexString()).toBe(lock.id)
    expect(doc.action).toBe('bank-details-42')
    expect(doc.createdAt.getTime()).toBeGreaterThanOrEqual(before - 1000)
    expect(doc.refreshedAt.getTime()).toBe(doc.createdAt.getTime())
    expect(doc.expiresAt.getTime() - doc.createdAt.getTime()).toBe(60_000)
  })

  it('gives null while someone else holds the key, and the key again after free', async () => {
    const first = await t.locker.lock('payment-1')
    expect(await t.locker.lock('payment-1')).toBeNull()
    const other = new LockManager(t.ctx.collection)
    try {
      expect(await other.lock('payment-1')).toBeNull()
      expect(await first.free()).toBe(true)
      const second = await other.lock('payment-1')
      expect(second).not.toBeNull()
      expect(second.id).not.toBe(first.id)
    } finally {
      await other.close()
    }
  })

  it('frees once: a second free resolves false and deletes nothing else', async () => {
    const lock = await t.locker.lock('k')
    expect(await lock.free()).toBe(true)
    expect(lock.locked).toBe(false)
    const next = await t.locker.lock('k')
    expect(await lock.free()).toBe(false)
    expect(await t.ctx.collection.countDocuments({ _id: new ObjectId(next.id) })).toBe(1)
  })

  it('refresh() pushes expiresAt forward and reports whether the lock is held', async () => {
    const lock = await t.locker.lock('refresh-me')
    const before = await t.ctx.collection.findOne({})
    await new Promise((r) => setTimeout(r, 30))
    expect(await lock.refresh()).toBe(true)
    const after = await t.ctx.collection.findOne({})
    expect(after.expiresAt.getTime()).toBeGreaterThan(before.expiresAt.getTime())
    expect(after.refreshedAt.getTime()).toBeGreaterThan(before.refreshedAt.getTime())
    expect(after.createdAt.getTime()).toBe(before.createdAt.getTime())
    await lock.free()
    expect(await lock.refresh()).toBe(false)
  })

  it('refresh() turns locked false when the document was removed behind its back', async () => {
    const lock = await t.locker.lock('vanishing')
    await t.ctx.collection.deleteMany({})
    expect(await lock.refresh()).toBe(false)
    expect(lock.locked).toBe(false)
    expect(await lock.free()).toBe(false)
  })

  it('the background refresh keeps held locks alive and marks vanished ones unlocked', async () => {
    const fast = new LockManager(t.ctx.collection, { ttlMs: 3000, refreshMs: 200 })
    try {
      const kept = await fast.lock('kept')
      const gone = await fast.lock('gone')
      const { expiresAt: firstExpiry } = await t.ctx.collection.findOne({ action: 'kept' })
      await t.ctx.collection.deleteOne({ action: 'gone' })
      expect(await eventually(() => !gone.locked, 5000)).toBe(true)
      const refreshed = await eventually(async () => {
        const doc = await t.ctx.collection.findOne({ action: 'kept' })
        return doc.expiresAt > firstExpiry
      }, 5000)
      expect(refreshed).toBe(true)
      expect(kept.locked).toBe(true)
      expect(fast.held).toBe(1)
    } finally {
      await fast.close()
    }
  })

  it('stores array keys as { _key_array } like mongo-locks, and numbers and objects as given', async () => {
    const arr = await t.locker.lock(['org', 42])
    expect(arr.action).toEqual({ _key_array: ['org', 42] })
    expect(await t.locker.lock(['org', 42])).toBeNull()
    const num = await t.locker.lock(42)
    expect(num.action).toBe(42)
    const obj = await t.locker.lock({ org: 'a', kind: 'bank' })
    expect(obj.action).toEqual({ org: 'a', kind: 'bank' })
    expect(await t.locker.lock({ org: 'a', kind: 'bank' })).toBeNull()
    const stored = await t.ctx.collection.find({}, { projection: { _id: 0, action: 1 } }).toArray()
    expect(stored.map((d) => d.action)).toEqual([{ _key_array: ['org', 42] }, 42, { org: 'a', kind: 'bank' }])
  })

  it('creates the same indexes as mongo-locks (the TTL one where the server allows it)', async () => {
    await t.locker.lock('index-check')
    const indexes = await t.ctx.collection.indexes()
    const unique = indexes.find((i) => i.name === 'action_1')
    expect(unique).toMatchObject({ key: { action: 1 }, unique: true })
    const ttl = indexes.find((i) => i.name === 'expiresAt_1')
    if (ttl) expect(ttl).toMatchObject({ key: { expiresAt: 1 }, expireAfterSeconds: 0 })
  })

  it('LockManager.connect resolves to a ready manager on the named collection', async () => {
    const m = await LockManager.connect(process.env.MONGO_URL, { database: t.ctx.db.databaseName, collection: t.ctx.name })
    try {
      const lock = await m.lock('via-connect')
      expect(lock).not.toBeNull()
      expect(await t.ctx.collection.countDocuments({ action: 'via-connect' })).toBe(1)
      expect(await t.locker.lock('via-connect')).toBeNull()
    } finally {
      await m.close()
    }
  })
})

// Counted on a server of its own: its request counters see every command.
describe('a burst of frees', () => {
  const p = usePrivateServer()

  it('with every connection busy, frees go out in batched deletes, and each is answered', async () => {
    const collection = p.client.db('frees').collection('locks')
    const locker = new LockManager(collection, { logger: false })
    try {
      const locks = []
      for (let i = 0; i < 10; i++) {
        locks.push(...(await Promise.all(Array.from({ length: 100 }, (_, j) => locker.lock(`burst-${i}-${j}`)))))
      }
      expect(locks.every((l) => l !== null)).toBe(true)
      const { result, sent } = await p.commandsSent(() => Promise.all(locks.map((l) => l.free())))
      expect(result).toEqual(Array(1000).fill(true))
      expect(locks.some((l) => l.locked)).toBe(false)
      expect(await collection.countDocuments()).toBe(0)
      // One delete per free would be 1,000; the pool has 10 connections,
      // so at most 10 go out alone before the queue takes the rest.
      expect(sent('delete')).toBeLessThan(100)
      // And a free on its own afterwards is still exact.
      const alone = await locker.lock('alone')
      await collection.deleteOne({ action: 'alone' })
      expect(await alone.free()).toBe(false)
    } finally {
      await locker.close()
    }
  }, 60_000)
})
