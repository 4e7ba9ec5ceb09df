// Bad input: a TypeError that names the value and what was expected, and
// nothing written. Server trouble: a clear MongoLocksError within the
// configured server-selection timeout; no hang, no unhandled rejection.
import { describe, it, expect, afterEach, beforeEach } from 'vitest'
import { freshCollection, lib, mongoUrl, useLocker } from '../support/suite.mjs'
import { freePort } from '../support/ferretdb.mjs'

const { LockManager, MongoLocksError } = lib

describe('bad keys', () => {
  let ctx
  let locker
  beforeEach(async () => {
    ctx = await freshCollection('bad')
    locker = new LockManager(ctx.collection)
    await locker.lock('warm-up').then((l) => l.free()) // connected and indexed
  })
  afterEach(async () => {
    await locker.close()
    await ctx.close()
  })

  const cases = [
    ['undefined', undefined, /invalid lock key undefined/],
    ['null', null, /invalid lock key null/],
    ['a function', function lockMe() {}, /invalid lock key \[function lockMe\]: functions are not keys/],
    ['a symbol', Symbol('s'), /invalid lock key a Symbol/],
    ['the empty string', '', /invalid lock key "": the empty string is not a key/],
    ['a $-prefixed field', { $where: 'sleep(1)' }, /field name "\$where" starts with '\$'/],
    ['a nested $-prefixed field', { a: { $gt: 1 } }, /field name "\$gt"/],
    ['a $-field inside an array', [{ $ne: 1 }], /field name "\$ne"/],
    ['an oversized key', 'x'.repeat(2000), /over the 1024-byte bound/],
    ['NaN', NaN, /NaN is not a finite number/],
    ['Infinity', Infinity, /is not a finite number/],
    ['a boolean', true, /invalid lock key true/],
    ['a Date', new Date(0), /plain/],
    ['a bigint', 10n, /invalid lock key a BigInt/],
    ['a cyclic object', (() => { const o = {}; o.self = o; return o })(), /nested deeper than 16 levels \(or cyclic\)/],
  ]
  for (const [label, key, message] of cases) {
    it(`rejects ${label} with a TypeError and writes nothing`, async () => {
      const result = locker.lock(key)
      expect(result).toBeInstanceOf(Promise)
      const err = await result.catch((e) => e)
      expect(err).toBeInstanceOf(TypeError)
      expect(err.message).toMatch(message)
      expect(err.message).toMatch(/expected a non-empty string, a finite number, an array or a plain object/)
      expect(await ctx.collection.countDocuments()).toBe(0)
    })
  }
})

describe('bad options and connection strings', () => {
  let ctx
  beforeEach(async () => { ctx = await freshCollection('bad-opts') })
  afterEach(async () => { await ctx.close() })

  it('an unknown option throws a TypeError naming it and the known ones', () => {
    expect(() => new LockManager(ctx.collection, { ttl: 5 })).toThrow(TypeError)
    expect(() => new LockManager(ctx.collection, { ttl: 5 })).toThrow(/unknown option "ttl"; expected one of uri, ttlMs, refreshMs/)
  })

  it('a wrong option type throws a TypeError naming the value', () => {
    expect(() => new LockManager(ctx.collection, { ttlMs: '60s' })).toThrow(/options.ttlMs must be a whole number of milliseconds from 1 to 2147483647, got "60s"/)
    expect(() => new LockManager(ctx.collection, { refreshMs: -1 })).toThrow(/options.refreshMs .* got -1/)
    expect(() => new LockManager(ctx.collection, { ttlMs: 1000, refreshMs: 5000 })).toThrow(/refreshMs \(5000\) must be less than options.ttlMs \(1000\)/)
    expect(() => new LockManager(ctx.collection, 'fast')).toThrow(/options must be an object, got "fast"/)
  })

  it('something that is not a Collection throws a TypeError', () => {
    expect(() => new LockManager('mongo-locks')).toThrow(/needs a MongoDB driver Collection .* got "mongo-locks"/)
    expect(() => new LockManager({})).toThrow(TypeError)
  })

  it('a malformed connection string is refused, with the password hidden', async () => {
    expect(() => new LockManager(ctx.collection, { uri: 'http://u:hunter2@localhost' })).toThrow(/malformed MongoDB connection string "http:\/\/u:\*\*\*\*@localhost"/)
    const err = await LockManager.connect('mongodb://', { database: 'x' }).catch((e) => e)
    expect(err).toBeInstanceOf(TypeError)
    expect(err.message).toMatch(/malformed MongoDB connection string/)
    const bad = await LockManager.connect('mongodb://localhost:27017/?w=banana&wtimeoutMS=abc', { database: 'x' }).catch((e) => e)
    expect(bad).toBeInstanceOf(TypeError)
    expect(bad.message).toMatch(/malformed MongoDB connection string/)
  })

  it('LockManager.connect rejects bad arguments with TypeErrors', async () => {
    await expect(LockManager.connect(42, { database: 'x' })).rejects.toThrow(/needs a connection string, got 42/)
    await expect(LockManager.connect(mongoUrl(), {})).rejects.toThrow(/needs options.database/)
    await expect(LockManager.connect(mongoUrl(), { database: 'x', colection: 'typo' })).rejects.toThrow(/unknown option "colection"/)
  })

  it('nothing was written by any of the refused calls', async () => {
    expect(() => new LockManager(ctx.collection, { bogus: true })).toThrow(TypeError)
    expect(await ctx.db.listCollections({ name: ctx.name }).toArray()).toHaveLength(0)
  })
})

describe('an unreachable server', () => {
  it('lock() rejects with a clear MongoLocksError within the server-selection timeout', async () => {
    const port = await freePort() // nothing listens there
    const fake = { collectionName: 'mongo-locks', dbName: 'app', client: { s: { url: `mongodb://127.0.0.1:${port}/?directConnection=true` } } }
    const locker = new LockManager(fake, { serverSelectionTimeoutMs: 500 })
    const started = Date.now()
    const err = await locker.lock('k').catch((e) => e)
    const took = Date.now() - started
    expect(err).toBeInstanceOf(MongoLocksError)
    expect(err.name).toBe('MongoLocksError')
    expect(err.message).toMatch(/could not reach a MongoDB server/)
    expect(took).toBeLessThan(10_000)
    await locker.close()
  })

  it('LockManager.connect rejects the same way', async () => {
    const port = await freePort()
    const err = await LockManager.connect(`mongodb://127.0.0.1:${port}/`, { database: 'app', serverSelectionTimeoutMs: 300 }).catch((e) => e)
    expect(err).toBeInstanceOf(MongoLocksError)
    expect(err.message).toMatch(/could not reach a MongoDB server/)
  })
})

describe('an options object that fails after the lock is taken leaves no orphan', () => {
  const t = useLocker('orphan', { ttlMs: 3000 })

  it('a signal we could not unhook (no removeEventListener) is refused before anything is written', async () => {
    const half = { aborted: false, addEventListener() {} }
    const err = await t.locker.lock('k', { signal: half }).catch((e) => e)
    expect(err).toBeInstanceOf(TypeError)
    expect(err.message).toMatch(/options.signal must be an AbortSignal, got \{"aborted":false\}/)
    expect(await t.ctx.collection.countDocuments()).toBe(0)
    expect(t.locker.held).toBe(0)
    // and the key is free for anyone
    const other = new LockManager(t.ctx.collection)
    try {
      expect(await other.lock('k')).not.toBeNull()
    } finally {
      await other.close()
    }
  })

  it('a signal whose removeEventListener throws still gives a working lock, freed normally', async () => {
    const odd = { aborted: false, addEventListener() {}, removeEventListener() { throw new Error('not today') } }
    const lock = await t.locker.lock('k', { signal: odd })
    expect(lock.locked).toBe(true)
    expect(t.locker.held).toBe(1)
    expect(await lock.free()).toBe(true)
    expect(t.locker.held).toBe(0)
    expect(await t.ctx.collection.countDocuments()).toBe(0)
  })
})
