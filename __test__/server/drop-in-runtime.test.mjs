// Drop-in at run time, against the test server: what mongo-locks 3.2 code
// reads and does beyond lock()/free() works unchanged — lock._id (an ObjectId
// of the application's mongodb, the stored _id), lock.collection and
// locker.collection, locker.MongoLocksError, locker.ready, `locked` writable,
// console logging by default — and subclassing and spying on LockManager
// keep working. Real server throughout; the only mock is the mocked locker
// of the EPR LAPS Backend's locking guide ({ lock: vi.fn() }) handing out a
// stock-shaped lock.
import { describe, it, expect, vi } from 'vitest'
import { spawn } from 'node:child_process'
import { MongoClient, ObjectId, Collection } from 'mongodb'
import { useLocker, freshCollection, lib, mongoUrl, root, sleep, eventually } from '../support/suite.mjs'
import { freePort } from '../support/ferretdb.mjs'

const { LockManager, MongoLocksError, acquireLock, requireLock } = lib

describe('lock fields, as mongo-locks 3.2 has them', () => {
  const t = useLocker('dropin', { logger: false })

  it('lock._id is an ObjectId of the application\'s mongodb, equal to the stored _id', async () => {
    const lock = await t.locker.lock('bank-details-42')
    expect(lock._id).toBeInstanceOf(ObjectId)
    expect(lock._id).toBe(lock._id) // one object, as a field
    expect(lock._id.toHexString()).toBe(lock.id)
    // Usable in the application's own queries, as stock's is.
    const stored = await t.ctx.collection.findOne({ _id: lock._id })
    expect(stored.action).toBe('bank-details-42')
    expect(stored._id.equals(lock._id)).toBe(true)
    await lock.free()
  })

  it('lock.collection and locker.collection are the collection given to the constructor', async () => {
    expect(t.locker.collection).toBe(t.ctx.collection)
    const lock = await t.locker.lock('a')
    const [b, c] = await t.locker.lockAll(['b', 'c'])
    const viaHelper = await acquireLock(t.locker, 'd')
    const fromWithLock = await t.locker.withLock('e', (l) => l.collection)
    for (const l of [lock, b, c, viaHelper]) expect(l.collection).toBe(t.ctx.collection)
    expect(fromWithLock).toBe(t.ctx.collection)
    expect(await lock.collection.countDocuments({ _id: { $in: [lock._id, b._id, c._id, viaHelper._id] } })).toBe(4)
    for (const l of [lock, b, c, viaHelper]) await l.free()
  })

  it('lock.action is the stored key, arrays wrapped as mongo-locks stores them', async () => {
    const lock = await t.locker.lock(['account', 7])
    expect(lock.action).toEqual({ _key_array: ['account', 7] })
    expect((await t.ctx.collection.findOne({ _id: lock._id })).action).toEqual({ _key_array: ['account', 7] })
    await lock.free()
  })

  it('the fields are plain writable fields, as in mongo-locks', async () => {
    const lock = await t.locker.lock('w')
    const other = new ObjectId()
    lock._id = other
    lock.collection = null
    expect([lock._id, lock.collection]).toEqual([other, null])
    // free() is by the lock's own id (lock.id), whatever the field holds.
    expect(await lock.free()).toBe(true)
  })

  it('a bad key is refused at run time with a TypeError, writing nothing (stock stored it)', async () => {
    for (const key of [undefined, null, () => 1, Symbol('s'), true, new Date()]) {
      await expect(t.locker.lock(key)).rejects.toThrow(TypeError)
    }
    expect(await t.ctx.collection.countDocuments({})).toBe(0)
  })
})

describe('locker fields, as mongo-locks 3.2 has them', () => {
  const t = useLocker('dropin', { logger: false })

  it('locker.MongoLocksError is the exported class; new MongoLocksError() needs no message', () => {
    expect(t.locker.MongoLocksError).toBe(MongoLocksError)
    const bare = new t.locker.MongoLocksError()
    expect(bare).toBeInstanceOf(Error)
    expect(bare.message).toBe('')
    expect(bare.name).toBe('MongoLocksError')
    expect(bare.code).toBeUndefined()
  })

  it('locker.ready resolves to the index names once the indexes exist', async () => {
    expect(t.locker.ready).toBe(t.locker.ready)
    expect(await t.locker.ready).toEqual(['action_1', 'expiresAt_1'])
    const indexes = await t.ctx.collection.indexes()
    expect(indexes.find((i) => i.name === 'action_1')).toMatchObject({ key: { action: 1 }, unique: true })
  })

  it('locker.ready rejects with a MongoLocksError when the server is not there, and reading it again tries again', async () => {
    const port = await freePort()
    const options = { uri: `mongodb://127.0.0.1:${port}/?directConnection=true`, serverSelectionTimeoutMs: 300, logger: false }
    const locker = new LockManager({ collectionName: 'c', dbName: 'd' }, options)
    const unobserved = new LockManager({ collectionName: 'c', dbName: 'd' }, options)
    try {
      void unobserved.ready // never awaited: must not become an unhandled rejection
      const first = locker.ready
      await expect(first).rejects.toBeInstanceOf(MongoLocksError)
      expect(locker.ready).not.toBe(first)
      await expect(locker.ready).rejects.toBeInstanceOf(MongoLocksError)
      await sleep(500)
    } finally {
      await locker.close()
      await unobserved.close()
    }
  })
})

describe('after LockManager.connect()', () => {
  it('locker.collection is a collection of the application\'s mongodb for the same server, database and name, closed by close()', async () => {
    const ctx = await freshCollection('dropin')
    const locker = await LockManager.connect(mongoUrl(), { database: ctx.db.databaseName, collection: ctx.name, logger: false })
    try {
      expect(locker).toBeInstanceOf(LockManager)
      expect(locker.MongoLocksError).toBe(MongoLocksError)
      expect(await locker.ready).toEqual(['action_1', 'expiresAt_1'])
      const lock = await locker.lock('connected')
      expect(locker.collection).toBeInstanceOf(Collection)
      expect(locker.collection).toBe(locker.collection)
      expect([locker.collection.dbName, locker.collection.collectionName]).toEqual([ctx.db.databaseName, ctx.name])
      expect(lock.collection).toBe(locker.collection)
      expect((await locker.collection.findOne({ _id: lock._id })).action).toBe('connected')
      await lock.free()
    } finally {
      await locker.close()
      await ctx.close()
    }
  })
})

describe('subclassing and spying, as with mongo-locks', () => {
  const t = useLocker('dropin', { logger: false })

  it('a subclass overriding lock() is used by withLock and the helpers, and is a LockManager', async () => {
    class PrefixedLockManager extends LockManager {
      constructor(collection, prefix) {
        super(collection, { logger: false })
        this.prefix = prefix
      }

      lock(key, options) {
        return super.lock(`${this.prefix}:${key}`, options)
      }
    }
    const locker = new PrefixedLockManager(t.ctx.collection, 'tenant-1')
    try {
      expect(locker).toBeInstanceOf(PrefixedLockManager)
      expect(locker).toBeInstanceOf(LockManager)
      expect(locker.collection).toBe(t.ctx.collection)
      const lock = await locker.lock('job')
      expect(lock.action).toBe('tenant-1:job')
      expect(lock.collection).toBe(t.ctx.collection)
      await lock.free()
      expect(await locker.withLock('report', (l) => l.action)).toBe('tenant-1:report')
      const required = await requireLock(locker, 'nightly')
      expect(required.action).toBe('tenant-1:nightly')
      await required.free()
    } finally {
      await locker.close()
    }
  })

  it('vi.spyOn(LockManager.prototype, \'lock\') sees every lock() call, and calls through to the server', async () => {
    const spy = vi.spyOn(LockManager.prototype, 'lock')
    try {
      const lock = await t.locker.lock('spied')
      await t.locker.withLock('spied-too', () => {})
      await (await acquireLock(t.locker, 'spied-three')).free()
      expect(spy.mock.calls.map(([key]) => key)).toEqual(['spied', 'spied-too', 'spied-three'])
      expect(await spy.mock.results[0].value).toBe(lock)
      expect(await t.ctx.collection.countDocuments({ action: 'spied' })).toBe(1)
      await lock.free()
    } finally {
      spy.mockRestore()
    }
  })

  it('vi.spyOn(LockManager.prototype, \'lock\').mockResolvedValue(null) makes every locker contended', async () => {
    const spy = vi.spyOn(LockManager.prototype, 'lock').mockResolvedValue(null)
    try {
      expect(await t.locker.lock('k')).toBeNull()
      await expect(requireLock(t.locker, 'k')).rejects.toThrow('Failed to acquire lock for k')
    } finally {
      spy.mockRestore()
    }
    expect(await t.ctx.collection.countDocuments({})).toBe(0)
  })

  it('the locking guide\'s mocked locker handing out a stock-shaped lock works with the helpers and await using', async () => {
    const free = vi.fn(async () => true)
    const fake = {
      _id: new ObjectId(),
      action: 'fake',
      collection: t.ctx.collection,
      locked: true,
      free,
      refresh: async () => true,
      [Symbol.dispose]() {},
      [Symbol.asyncDispose]() { return this.free() },
    }
    const locker = { lock: vi.fn().mockResolvedValue(fake) }
    expect(await acquireLock(locker, 'payment-1')).toBe(fake)
    const lock = await requireLock(locker, 'payment-2')
    await lock[Symbol.asyncDispose]()
    expect(free).toHaveBeenCalledOnce()
    expect(locker.lock.mock.calls).toEqual([['payment-1'], ['payment-2']])
  })
})

describe('lock.locked is writable, as in mongo-locks', () => {
  const t = useLocker('dropin', { ttlMs: 3000, refreshMs: 100, logger: false })

  it('setting it to false stops refreshing that lock and nothing else: the document stays and expires, free() resolves false', async () => {
    const onLost = vi.fn()
    const lock = await t.locker.lock('abandoned', { onLost })
    const kept = await t.locker.lock('kept')
    lock.locked = false
    expect(lock.locked).toBe(false)
    // A refresh already on its way may still write both documents: wait for
    // two refreshes of the other lock, so that the last was sent after the
    // switch, and take the abandoned document's state from there.
    const keptRefreshedAt = async () => (await t.ctx.collection.findOne({ _id: kept._id })).refreshedAt.getTime()
    const nextRefresh = async (since) => {
      expect(await eventually(async () => (await keptRefreshedAt()) > since, 5000, 10), 'the other lock is refreshed').toBe(true)
      return keptRefreshedAt()
    }
    await nextRefresh(await nextRefresh(await keptRefreshedAt()))
    const before = await t.ctx.collection.findOne({ _id: lock._id })
    const keptBefore = await keptRefreshedAt()
    await sleep(500) // five refresh periods
    const after = await t.ctx.collection.findOne({ _id: lock._id })
    expect(after.refreshedAt).toEqual(before.refreshedAt)
    // The manager's other locks are still refreshed.
    await nextRefresh(keptBefore)
    expect(kept.locked).toBe(true)
    await kept.free()
    expect(await lock.refresh()).toBe(false)
    expect(await lock.free()).toBe(false)
    expect(await t.ctx.collection.countDocuments({ _id: lock._id })).toBe(1)
    expect(lock.signal.aborted).toBe(false)
    expect(onLost).not.toHaveBeenCalled()
    expect(t.locker.stats()).toMatchObject({ held: 0, lost: 0 })
    // Someone else takes it once it expires, as after a crash.
    expect(await t.locker.lock('abandoned')).toBeNull()
    const next = await t.locker.lock('abandoned', { waitMs: 6000 })
    expect(next).not.toBeNull()
    await next.free()
  })

  it('setting it to true on a lock no longer held is a TypeError; on a held lock, a no-op', async () => {
    const lock = await t.locker.lock('revive')
    lock.locked = true
    expect(lock.locked).toBe(true)
    await lock.free()
    expect(() => { lock.locked = true }).toThrow(TypeError)
    expect(lock.locked).toBe(false)
  })
})

/**
 * Runs a child process that takes over an expired lock (a warning) and loses
 * a held lock (an error) with the given logger option; resolves to
 * { code, stdout, stderr }.
 */
function runLogging(ctx, loggerMode) {
  const script = `
    const { MongoClient } = require('mongodb')
    const { LockManager } = require('./index.js')
    const { MONGO_URL, DB, COLL, MODE } = process.env
    const loggers = {
      default: undefined,
      false: false,
      own: { warn: (fields, message) => console.log(JSON.stringify({ level: 'warn', message, fields })),
             error: (fields, message) => console.log(JSON.stringify({ level: 'error', message, fields })) },
    }
    ;(async () => {
      const client = await MongoClient.connect(MONGO_URL)
      const collection = client.db(DB).collection(COLL)
      const past = new Date(Date.now() - 1000)
      await collection.insertOne({ action: 'stale', createdAt: past, refreshedAt: past, expiresAt: past })
      const options = { ttlMs: 3000, refreshMs: 100 }
      if (MODE !== 'default') options.logger = loggers[MODE]
      const locker = new LockManager(collection, options)
      const stale = await locker.lock('stale')
      const held = await locker.lock('held')
      await collection.deleteOne({ _id: held._id })
      await new Promise((resolve) => held.signal.addEventListener('abort', resolve))
      await new Promise((resolve) => setTimeout(resolve, 200))
      await stale.free()
      await locker.close()
      await client.close()
    })().catch((err) => { console.error(err); process.exit(1) })
  `
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', script], {
      cwd: root,
      env: { ...process.env, MONGO_URL: mongoUrl(), DB: ctx.db.databaseName, COLL: ctx.name, MODE: loggerMode },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => { stdout += d })
    child.stderr.on('data', (d) => { stderr += d })
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`timed out\n${stdout}\n${stderr}`)) }, 30_000)
    child.on('exit', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }) })
  })
}

describe('logging: to the console by default, as mongo-locks reports its failures', () => {
  let ctx
  const withCollection = (fn) => async () => {
    ctx = await freshCollection('dropin-log')
    try {
      await fn()
    } finally {
      await ctx.close()
    }
  }

  it('without a logger: warnings on console.warn, errors on console.error (stderr), nothing at debug', withCollection(async () => {
    const run = await runLogging(ctx, 'default')
    expect(run.code, run.stderr).toBe(0)
    expect(run.stdout).toBe('')
    expect(run.stderr).toMatch(/^mongo-locks-native: took over an expired lock \{ action: 'stale' \}$/m)
    expect(run.stderr).toMatch(/^mongo-locks-native: lock lost \{/m)
    expect(run.stderr).not.toMatch(/acquired|freed/)
  }))

  it('logger: false prints nothing', withCollection(async () => {
    const run = await runLogging(ctx, 'false')
    expect(run.code, run.stderr).toBe(0)
    expect(run.stderr).toBe('')
    expect(run.stdout).toBe('')
  }))

  it('with a logger, everything goes to it and nothing to the console', withCollection(async () => {
    const run = await runLogging(ctx, 'own')
    expect(run.code, run.stderr).toBe(0)
    expect(run.stderr).toBe('')
    const lines = run.stdout.trim().split('\n').map((l) => JSON.parse(l))
    expect(lines).toContainEqual({ level: 'warn', message: 'took over an expired lock', fields: { action: 'stale' } })
    expect(lines.some((l) => l.level === 'error' && l.message === 'lock lost' && l.fields.action === 'held')).toBe(true)
  }))
})
