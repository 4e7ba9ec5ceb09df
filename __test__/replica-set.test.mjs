// Write concern: majority on a replica set (FerretDB announcing itself as
// one with --repl-set-name exercises that path), the server's default on a
// standalone, or as configured.
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { startFerretDB } from '../scripts/ferretdb.mjs'
import { lib, mongoUrl } from './support.mjs'

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

  it('is null before the first connection, and a bad value is a TypeError', async () => {
    const fake = { collectionName: 'c', dbName: 'd', client: { s: { url: rs.url } } }
    expect(() => new LockManager(fake, { writeConcern: 'all' })).toThrow(/options.writeConcern must be "auto", "majority" or "default", got "all"/)
    const m = await LockManager.connect(rs.url, { database: 'rs-test' })
    await m.close()
  })
})
