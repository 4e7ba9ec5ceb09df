// The server stopped and restarted on the same data directory while locks
// are held. This file runs its own FerretDB (it has to stop it), even when
// MONGO_URL points the rest of the suite elsewhere.
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { MongoClient } from 'mongodb'
import { startFerretDB } from '../support/ferretdb.mjs'
import { lib, sleep, eventually } from '../support/suite.mjs'

const { LockManager, MongoLocksError, LockLostError } = lib
const TTL = 3000
const options = { ttlMs: TTL, refreshMs: 300, serverSelectionTimeoutMs: 2000 }
// The short outage below lasts about 5 s (two calls that each give up after
// the 2 s server-selection timeout, and a pause): a ttl well above that.
const patient = { ...options, ttlMs: 15_000 }

describe('server restart', () => {
  let server
  let client
  let locks
  beforeAll(async () => {
    server = await startFerretDB()
    client = new MongoClient(server.url, { serverSelectionTimeoutMS: 5000 })
    locks = client.db('restart').collection('mongo-locks')
  })
  afterAll(async () => {
    await client?.close()
    await server?.stop()
  })

  it('a short outage: locks persist, refresh resumes, lock() fails clearly meanwhile, nobody else gets the keys', async () => {
    const holder = new LockManager(locks, patient)
    const other = new LockManager(locks, patient)
    try {
      const a = await holder.lock('a')
      const b = await holder.lock('b')
      expect(await other.lock('a')).toBeNull()

      await server.halt()
      const started = Date.now()
      const err = await holder.lock('c').catch((e) => e)
      expect(err).toBeInstanceOf(MongoLocksError)
      expect(err.message).toMatch(/could not reach a MongoDB server/)
      expect(Date.now() - started).toBeLessThan(5000)
      const waited = await other.lock('a', { waitMs: 400 }).catch((e) => e)
      expect(waited === null || waited instanceof MongoLocksError).toBe(true)

      await sleep(1000)
      await server.restart()

      // The documents survived, and the holder's refresh gets through again.
      const before = await locks.findOne({ action: 'a' })
      expect(before).not.toBeNull()
      const refreshed = await eventually(async () => (await locks.findOne({ action: 'a' }))?.refreshedAt > before.refreshedAt, 5000)
      expect(refreshed).toBe(true)
      expect(a.locked && b.locked).toBe(true)
      expect(a.signal.aborted).toBe(false)
      expect(await other.lock('a')).toBeNull()
      expect(await other.lock('b')).toBeNull()
      expect(await a.free()).toBe(true)
      expect(await other.lock('a')).not.toBeNull()
    } finally {
      await holder.close()
      await other.close()
    }
  })

  it('an outage longer than the ttl: holders get their lost signal during it, and only then can others take the keys', async () => {
    const holder = new LockManager(locks, options)
    const other = new LockManager(locks, options)
    try {
      const lock = await holder.lock('long')
      const lostAt = new Promise((resolve) => lock.signal.addEventListener('abort', () => resolve(Date.now())))
      await server.halt()
      const haltedAt = Date.now()
      const when = await lostAt // fired while the server is down
      expect(lock.signal.reason).toBeInstanceOf(LockLostError)
      expect(lock.locked).toBe(false)
      expect(when - haltedAt).toBeLessThan(TTL + 500)
      await server.restart()
      // Once the driver has found the restarted server again (a loaded
      // machine can take longer than one 2 s server selection).
      expect(await eventually(() => other.ping().then(() => true, () => false), 15_000, 100)).toBe(true)
      const theirs = await other.lock('long', { waitMs: 5000 })
      expect(theirs).not.toBeNull()
      expect(Date.now()).toBeGreaterThan(when) // the old holder had let go first
      expect(await lock.free()).toBe(false) // and its free() does not touch the new holder's lock
      expect(await locks.countDocuments({ action: 'long' })).toBe(1)
      expect(theirs.locked).toBe(true)
    } finally {
      await holder.close()
      await other.close()
    }
  })
})
