// Write concern: majority on a replica set (FerretDB announcing itself as
// one with --repl-set-name exercises that path), the server's default on a
// standalone, or as configured.
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { startFerretDB } from '../support/ferretdb.mjs'
import { MongoClient } from 'mongodb'
import { lib, mongoUrl, eventually } from '../support/suite.mjs'

const { LockManager } = lib

describe('write concern', () => {
  let rs
  beforeAll(async () => { rs = await startFerretDB({ replSetName: 'rs0' }) })
  afterAll(async () => { await rs?.stop() })

  it('uses majority on a replica set, and locks work with it', async () => {
    const m = await LockManager.connect(rs.url, { database: 'rs-test' })
    try {
      expect(m.writeConcern).toBe('majority')
      const lock = await m.lock('rs-key')
      expect(lock).not.toBeNull()
      expect(await m.lock('rs-key')).toBeNull()
      expect(await lock.refresh()).toBe(true)
      expect(await lock.free()).toBe(true)
    } finally {
      await m.close()
    }
  })

  it('can be told to use the server default on a replica set', async () => {
    const m = await LockManager.connect(rs.url, { database: 'rs-test', writeConcern: 'default' })
    try {
      expect(m.writeConcern).toBe('default')
    } finally {
      await m.close()
    }
  })

  it('uses the server default on the standalone test server, majority when asked', async () => {
    const standalone = process.env.MONGO_URL ? null : await LockManager.connect(mongoUrl(), { database: 'rs-test' })
    try {
      if (standalone) expect(standalone.writeConcern).toBe('default')
    } finally {
      await standalone?.close()
    }
    const forced = await LockManager.connect(mongoUrl(), { database: 'rs-test', writeConcern: 'majority' })
    try {
      expect(forced.writeConcern).toBe('majority')
      const lock = await forced.lock('forced')
      expect(await lock.free()).toBe(true)
    } finally {
      await forced.close()
    }
  })

  it('reads that decide go to the primary even when the connection string prefers secondaries', async () => {
    // This set has a primary and no secondary: a read that followed the
    // URI's readPreference would find no server, and a deleted lock would
    // never be reported lost.
    const m = await LockManager.connect(`${rs.url}&readPreference=secondary`, {
      database: 'rs-test', collection: 'secondary-pref', ttlMs: 3000, refreshMs: 200, operationTimeoutMs: 2000,
    })
    try {
      const gone = await m.lock('gone')
      const kept = await m.lock('kept')
      const client = new MongoClient(rs.url)
      try {
        await client.db('rs-test').collection('secondary-pref').deleteOne({ action: 'gone' })
      } finally {
        await client.close()
      }
      expect(await eventually(() => gone.signal.aborted, 5000, 20)).toBe(true)
      expect(gone.signal.reason.message).toMatch(/its document is gone/)
      expect(kept.locked).toBe(true)
      expect(await kept.free()).toBe(true)
    } finally {
      await m.close()
    }
  })

  it('is null before the first connection, and a bad value is a TypeError', async () => {
    const fake = { collectionName: 'c', dbName: 'd', client: { s: { url: rs.url } } }
    expect(() => new LockManager(fake, { writeConcern: 'all' })).toThrow(/options.writeConcern must be "auto", "majority" or "default", got "all"/)
    const m = await LockManager.connect(rs.url, { database: 'rs-test' })
    await m.close()
  })
})
