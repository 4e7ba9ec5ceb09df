// One behaviour suite, two implementations: the real LockManager on the test
// server, and the test locker of `mongo-locks-native/testing` (in memory).
// What a caller sees must be the same. Where the two cannot work the same
// way, the difference is an adapter of each implementation, said here:
//
// - time: `h.waitFor(cond, ms)` waits for what `ms` of time brings. The real
//   manager runs on real time (short ttlMs, and polling `cond` for up to a
//   generous bound, never tighter than 10 s on this loaded machine); the test
//   locker's clock is moved `ms` forward with `advance(ms)`, then `cond` must
//   hold at once.
// - a holder that died: `h.expireNow(lock)`. Real: the lock stops being
//   refreshed (`locked = false`) and its document's expiresAt is set in the
//   past with the driver; test locker: `locked = false`, then `expire(key)`.
// - a document deleted behind the holder's back: `h.removeDocument(key)`.
//   Real: deleteOne with the driver, which the holder finds at its next
//   refresh (refreshMs 200); test locker: `takeOver(key)`, found at once.
// - another process: `h.other` is a second LockManager on the same
//   collection for the real one; the test locker has one store, so it is the
//   same locker (a held key gives null to a second caller of one manager too).
// - another manager with other options: `h.make(options)`, a LockManager on
//   the same collection (closed at teardown), or createTestLocker(options).
// - time passing: `h.tick(ms)`, a real sleep, or `advance(ms)`.
// - once() records: the real manager's are documents of its collection
//   (`{ _once: key }`), the test locker's records in memory. A record's
//   ttlMs passing: a short ttlMs and real time, or `advance(ms)`; a record
//   deleted while its run goes on: `h.removeDocument({ _once: key })`.
//
// "The rules the Rust core owns" are the cases that keep lib/rules.js (the
// test locker's copy of each limit, default and message) equal to what the
// Rust core does: every message there is written out in full.
import { describe, it, expect, beforeEach, afterEach, vi } from 'vitest'
import { createRequire } from 'node:module'
import { BSON } from 'mongodb'
import { lib, freshCollection, eventually, sleep } from '../support/suite.mjs'

const require = createRequire(import.meta.url)
const { createTestLocker } = require('../../lib/testing.js')
const rules = require('../../lib/rules.js')
const { fingerprint } = require('../../lib/once.js')
const { LockLostError, MongoLocksError, OnceInProgressError, OnceMismatchError, OnceFailedError, acquireLock, requireLock } = lib

const OPTIONS = { ttlMs: 2000, refreshMs: 200 }

const implementations = [
  {
    name: 'LockManager on the test server',
    async setup() {
      const ctx = await freshCollection('conformance')
      const locker = new lib.LockManager(ctx.collection, { logger: false, ...OPTIONS })
      const other = new lib.LockManager(ctx.collection, { logger: false, ...OPTIONS })
      const made = []
      return {
        locker,
        other,
        make(options) {
          const m = new lib.LockManager(ctx.collection, { logger: false, ...options })
          made.push(m)
          return m
        },
        tick: sleep,
        waitFor: (cond, ms) => eventually(cond, Math.max(10_000, ms * 4), 25),
        async expireNow(lock) {
          lock.locked = false
          await ctx.collection.updateOne({ _id: lock._id }, { $set: { expiresAt: new Date(Date.now() - 5000) } })
        },
        removeDocument: (key) => ctx.collection.deleteOne({ action: key }),
        async teardown() {
          for (const m of made) await m.close()
          await other.close()
          await locker.close()
          await ctx.close()
        },
      }
    },
  },
  {
    name: 'test locker',
    async setup() {
      const locker = createTestLocker(OPTIONS)
      const made = []
      return {
        locker,
        other: locker,
        make(options) {
          const m = createTestLocker(options)
          made.push(m)
          return m
        },
        tick: (ms) => locker.advance(ms).then(() => Promise.all(made.map((m) => m.advance(ms)))),
        async waitFor(cond, ms) {
          await locker.advance(ms)
          return cond()
        },
        expireNow(lock) {
          const key = lock.action
          lock.locked = false
          locker.expire(key)
        },
        removeDocument: (key) => locker.takeOver(key),
        async teardown() {
          for (const m of made) await m.close()
          await locker.close()
        },
      }
    },
  },
]

// `await using` is syntax from Node 24 on: compiled here only where it parses.
const AsyncFunction = (async () => {}).constructor
let awaitUsing = null
try {
  awaitUsing = new AsyncFunction('locker', 'key', `
    const seen = {}
    {
      await using lock = await locker.lock(key)
      seen.inside = lock.locked
      seen.other = await locker.lock(key)
      seen.lock = lock
    }
    seen.after = seen.lock.locked
    {
      await using nothing = await locker.lock(key + '-free')
      await using none = await locker.lock(key + '-free')
      seen.none = none
    }
    return seen`)
} catch (err) {
  if (!(err instanceof SyntaxError)) throw err
}

describe.each(implementations)('$name', (impl) => {
  let h
  beforeEach(async () => { h = await impl.setup() })
  afterEach(async () => { await h.teardown() })

  it('lock() gives a lock, null to a second caller while held, and the key again after free()', async () => {
    const first = await h.locker.lock('bank-details-42')
    expect(first.locked).toBe(true)
    expect(first.action).toBe('bank-details-42')
    expect(first.id).toMatch(/^[0-9a-f]{24}$/)
    expect(first.fencingToken).toBeNull()
    expect(await h.locker.lock('bank-details-42')).toBeNull()
    expect(await h.other.lock('bank-details-42')).toBeNull()
    expect(await first.free()).toBe(true)
    expect(first.locked).toBe(false)
    expect(await first.free()).toBe(false)
    const second = await h.other.lock('bank-details-42')
    expect(second.id).not.toBe(first.id)
    expect(await first.free()).toBe(false) // never frees the new holder's lock
    expect(second.locked).toBe(true)
    await second.free()
  })

  it('stores keys as mongo-locks does: arrays wrapped, numbers and objects as given', async () => {
    const arr = await h.locker.lock(['org', 42])
    expect(arr.action).toEqual({ _key_array: ['org', 42] })
    expect(await h.locker.lock(['org', 42])).toBeNull()
    const num = await h.locker.lock(42)
    expect(num.action).toBe(42)
    const obj = await h.locker.lock({ org: 'a', kind: 'bank' })
    expect(obj.action).toEqual({ org: 'a', kind: 'bank' })
    expect(await h.locker.lock({ org: 'a', kind: 'bank' })).toBeNull()
    for (const l of [arr, num, obj]) await l.free()
  })

  it.each([
    ['no key', (l) => l.lock(undefined), /invalid lock key undefined: a lock needs a key/],
    ['an empty key', (l) => l.lock(''), /invalid lock key "": the empty string is not a key/],
    ['a class instance', (l) => l.lock(new Date(0)), /objects other than plain \{ … \} objects are not accepted/],
    ['a $ field', (l) => l.lock({ $where: 1 }), /field name "\$where" starts with '\$'/],
    ['an unknown option', (l) => l.lock('k', { wait: 5 }), /unknown lock option "wait"; expected one of waitMs, signal, onLost, maxHoldMs, fencing, minHoldMs/],
    ['a negative waitMs', (l) => l.lock('k', { waitMs: -5 }), /options.waitMs must be a whole number of milliseconds from 0 to 2147483647, got -5/],
    ['options that are not an object', (l) => l.lock('k', 5), /options must be an object, got 5/],
    ['a signal that is not one', (l) => l.lock('k', { signal: {} }), /options.signal must be an AbortSignal, got \{\}/],
    ['an onLost that is not a function', (l) => l.lock('k', { onLost: 'log it' }), /options.onLost must be a function, got "log it"/],
    ['fencing that is not a boolean', (l) => l.lock('k', { fencing: 'yes' }), /options.fencing must be true or false, got "yes"/],
    ['fencing on a permit', (l) => l.semaphore('k', { limit: 2 }).acquire({ fencing: true }), /options\.fencing is for exclusive locks .*a semaphore permit is shared/],
  ])('rejects %s with a TypeError, taking nothing', async (_, call, message) => {
    const err = await call(h.locker).catch((e) => e)
    expect(err).toBeInstanceOf(TypeError)
    expect(err.message).toMatch(message)
    expect(h.locker.stats()).toMatchObject({ held: 0, acquired: 0 })
  })

  it('waitMs: null once it has passed while the key stays held', async () => {
    const held = await h.locker.lock('busy')
    const waiting = h.other.lock('busy', { waitMs: 500 })
    let settled = false
    waiting.then(() => { settled = true })
    expect(await h.waitFor(() => settled, 600)).toBe(true)
    expect(await waiting).toBeNull()
    await held.free()
  })

  it('waitMs: a waiter gets the key as soon as the holder frees it', async () => {
    const held = await h.locker.lock('handover')
    const waiting = h.locker.lock('handover', { waitMs: 30_000 })
    await sleep(20)
    expect(await held.free()).toBe(true)
    const next = await waiting
    expect(next).not.toBeNull()
    expect(next.locked).toBe(true)
    await next.free()
  })

  it('signal: aborting rejects the wait with the signal\'s reason and takes nothing; an aborted signal rejects at once', async () => {
    const held = await h.locker.lock('cancel-me')
    const controller = new AbortController()
    const waiting = h.locker.lock('cancel-me', { waitMs: 30_000, signal: controller.signal })
    const reason = new Error('shutting down')
    controller.abort(reason)
    await expect(waiting).rejects.toBe(reason)
    await expect(h.locker.lock('other-key', { signal: AbortSignal.abort(reason) })).rejects.toBe(reason)
    expect(await held.free()).toBe(true)
    const again = await h.locker.lock('cancel-me')
    expect(again).not.toBeNull()
    await again.free()
    expect(h.locker.stats().held).toBe(0)
  })

  it('a holder that died: its lock expires and the next lock() takes it over', async () => {
    const dead = await h.locker.lock('crashed-holder')
    await h.expireNow(dead)
    const next = await h.other.lock('crashed-holder', { waitMs: 10_000 })
    expect(next).not.toBeNull()
    expect(next.id).not.toBe(dead.id)
    expect(await dead.free()).toBe(false)
    expect(next.locked).toBe(true)
    expect(h.other.stats().takenOver).toBeGreaterThanOrEqual(1)
    await next.free()
  })

  it('locked = false stops refreshing: no signal, free() resolves false, the key is free one ttl later', async () => {
    const lock = await h.locker.lock('abandoned')
    const { signal } = lock
    lock.locked = false
    expect(lock.locked).toBe(false)
    expect(await lock.free()).toBe(false)
    expect(await h.other.lock('abandoned')).toBeNull() // still taken: it expires, not freed
    expect(() => { lock.locked = true }).toThrow(/cannot take back a lock that is no longer held/)
    const next = await h.waitFor(() => h.other.lock('abandoned'), OPTIONS.ttlMs + 100)
    expect(next).not.toBeNull()
    expect(signal.aborted).toBe(false)
    await next.free()
  })

  it('lost: the document gone aborts lock.signal with a LockLostError, calls onLost once, turns locked false', async () => {
    const onLost = vi.fn()
    const lock = await h.locker.lock('watched', { onLost })
    const { signal } = lock
    expect(signal).toBeInstanceOf(AbortSignal)
    expect(lock.signal).toBe(signal)
    await h.removeDocument('watched')
    expect(await h.waitFor(() => signal.aborted && onLost.mock.calls.length > 0, OPTIONS.refreshMs * 2)).toBe(true)
    expect(signal.reason).toBeInstanceOf(LockLostError)
    expect(signal.reason.message).toMatch(/lost the lock on "watched": its document is gone/)
    expect(signal.reason.message).toBe('mongo-locks-native: lost the lock on "watched": its document is gone (deleted, or taken over after it expired)')
    expect(onLost).toHaveBeenCalledTimes(1)
    expect(onLost.mock.calls[0][0]).toBe(signal.reason)
    expect(lock.locked).toBe(false)
    expect(await lock.free()).toBe(false)
    expect(h.locker.stats().lost).toBe(1)
    const next = await h.other.lock('watched')
    expect(next).not.toBeNull()
    await next.free()
  })

  it('maxHoldMs: the lock stops being refreshed, expires one ttl later (its signal aborts), and another takes it', async () => {
    const lock = await h.locker.lock('stuck', { maxHoldMs: 100 })
    const { signal } = lock
    expect(await h.waitFor(() => signal.aborted, OPTIONS.ttlMs + 300)).toBe(true)
    expect(signal.reason).toBeInstanceOf(LockLostError)
    expect(signal.reason.message).toMatch(/its expiry passed without a successful refresh/)
    expect(signal.reason.message).toBe('mongo-locks-native: lost the lock on "stuck": its expiry passed without a successful refresh')
    expect(lock.locked).toBe(false)
    const next = await h.other.lock('stuck', { waitMs: 10_000 })
    expect(next).not.toBeNull()
    await next.free()
  })

  it('a freed lock\'s signal never aborts and onLost is not called', async () => {
    const onLost = vi.fn()
    const lock = await h.locker.lock('fine', { onLost })
    const { signal } = lock
    await lock.free()
    await h.waitFor(() => true, OPTIONS.ttlMs + 300)
    expect(signal.aborted).toBe(false)
    expect(onLost).not.toHaveBeenCalled()
  })

  it('fencing tokens: bigints increasing from holder to holder of a key, one sequence per key, past a takeover too', async () => {
    const a1 = await h.locker.lock('acct-1', { fencing: true })
    expect(typeof a1.fencingToken).toBe('bigint')
    await a1.free()
    const a2 = await h.other.lock('acct-1', { fencing: true })
    expect(a2.fencingToken).toBeGreaterThan(a1.fencingToken)
    const b1 = await h.locker.lock('acct-2', { fencing: true })
    expect(b1.fencingToken).toBe(1n)
    await h.removeDocument('acct-1') // a2 lost it, as if taken over
    const a3 = await h.locker.lock('acct-1', { fencing: true })
    expect(a3.fencingToken).toBeGreaterThan(a2.fencingToken)
    await a3.free()
    await b1.free()
  })

  it('minHoldMs: free() before it passes keeps the key taken until then', async () => {
    const lock = await h.locker.lock('nightly', { minHoldMs: 1000 })
    expect(await lock.free()).toBe(true)
    expect(lock.locked).toBe(false)
    expect(await h.other.lock('nightly')).toBeNull()
    const next = await h.waitFor(() => h.other.lock('nightly'), 1100)
    expect(next).not.toBeNull()
    await next.free()
  })

  it('lockAll: every key in the order given, or none (what it took is freed) when one is held', async () => {
    const locks = await h.locker.lockAll(['account-b', 'account-a', 'account-c'])
    expect(locks.map((l) => l.action)).toEqual(['account-b', 'account-a', 'account-c'])
    await Promise.all(locks.map((l) => l.free()))
    const held = await h.other.lock('account-b')
    expect(await h.locker.lockAll(['account-c', 'account-a', 'account-b'])).toBeNull()
    const a = await h.other.lock('account-a')
    expect(a).not.toBeNull() // freed again by the lockAll that gave up
    await a.free()
    await held.free()
    await expect(h.locker.lockAll(['a', 'a'])).rejects.toThrow(/got the key "a" twice/)
    await expect(h.locker.lockAll([])).rejects.toThrow(/needs a non-empty array of keys, got \[\]/)
  })

  it('lockAll: two callers taking the same keys in opposite orders never deadlock', async () => {
    const transfer = async (from, to) => {
      for (let i = 0; i < 5; i++) {
        const locks = await h.locker.lockAll([from, to], { waitMs: 20_000 })
        expect(locks).not.toBeNull()
        await sleep(1)
        await Promise.all(locks.map((l) => l.free()))
      }
    }
    await Promise.all([transfer('acct-1', 'acct-2'), transfer('acct-2', 'acct-1')])
    expect(h.locker.stats().held).toBe(0)
  })

  it('withLock: runs fn holding the lock, frees it, keeps fn\'s error, rejects when the key is held', async () => {
    const result = await h.locker.withLock('job', async (lock, signal) => {
      expect(lock.locked).toBe(true)
      expect(signal).toBe(lock.signal)
      expect(await h.other.lock('job')).toBeNull()
      return 42
    })
    expect(result).toBe(42)
    const boom = new Error('payment failed')
    await expect(h.locker.withLock('job', () => { throw boom })).rejects.toBe(boom)
    const held = await h.other.lock('job')
    let ran = false
    await expect(h.locker.withLock('job', () => { ran = true })).rejects.toThrow('Failed to acquire lock for job')
    expect(ran).toBe(false)
    await held.free()
    await expect(h.locker.withLock('job', 'not a function')).rejects.toThrow(/withLock\(key, fn\) needs a function, got string/)
  })

  it('the helpers acquireLock and requireLock work with it', async () => {
    const logger = { error: vi.fn() }
    const lock = await acquireLock(h.locker, 'payment-7', logger)
    expect(lock.locked).toBe(true)
    expect(await acquireLock(h.other, 'payment-7', logger)).toBeNull()
    expect(logger.error).toHaveBeenCalledWith('Failed to acquire lock for payment-7')
    await expect(requireLock(h.other, 'payment-7')).rejects.toThrow('Failed to acquire lock for payment-7')
    await lock.free()
    const sure = await requireLock(h.other, 'payment-7')
    expect(sure.locked).toBe(true)
    await sure.free()
  })

  it('semaphore: limit permits, then null; a freed permit goes to a waiter', async () => {
    const s = h.locker.semaphore('exports', { limit: 2 })
    const a = await s.acquire()
    const b = await s.acquire()
    expect(a.locked && b.locked).toBe(true)
    expect(a.action).toMatchObject({ _semaphore: 'exports' })
    expect(await s.acquire()).toBeNull()
    expect(await h.other.semaphore('exports', { limit: 2 }).acquire()).toBeNull()
    const waiting = s.acquire({ waitMs: 30_000 })
    await sleep(20)
    expect(await a.free()).toBe(true)
    const c = await waiting
    expect(c).not.toBeNull()
    await b.free()
    await c.free()
    expect(h.locker.stats().held).toBe(0)
  })

  it('read/write lock: readers share, a writer waits for them and keeps new readers out, readers wait for the writer', async () => {
    const rw = h.locker.readWriteLock('catalogue')
    const r1 = await rw.read()
    const r2 = await rw.read()
    expect(r1 && r2).toBeTruthy()
    expect(await rw.write()).toBeNull() // one attempt: readers hold
    expect(await h.locker.inspect({ _rwlock: 'catalogue', writer: true })).toBeNull() // and it gave its claim back
    const writer = rw.write({ waitMs: 30_000 })
    expect(await eventually(async () => (await h.locker.inspect({ _rwlock: 'catalogue', writer: true })) !== null, 10_000, 10)).toBe(true)
    expect(await rw.read()).toBeNull() // the waiting writer keeps readers out
    await r1.free()
    await r2.free()
    const w = await writer
    expect(w).not.toBeNull()
    expect(await rw.read()).toBeNull()
    const reader = rw.read({ waitMs: 30_000 })
    await sleep(20)
    await w.free()
    const r3 = await reader
    expect(r3).not.toBeNull()
    await r3.free()
  })

  it('inspect: who holds a key, until when; null for a free key', async () => {
    const lock = await h.locker.lock('inspected', { fencing: true })
    const found = await h.locker.inspect('inspected')
    expect(found).toMatchObject({ id: lock.id, heldByThisManager: true, holder: { pid: process.pid } })
    expect(found.expiresInMs).toBeGreaterThan(0)
    expect(found.expiresAt).toBeInstanceOf(Date)
    expect(BigInt(found.fencingToken)).toBe(lock.fencingToken)
    await lock.free()
    expect(await h.locker.inspect('inspected')).toBeNull()
  })

  it('stats: held, acquired, contended', async () => {
    const lock = await h.locker.lock('counted')
    expect(await h.locker.lock('counted')).toBeNull()
    expect(h.locker.stats()).toMatchObject({ held: 1, acquired: 1, contended: 1, lost: 0 })
    expect(h.locker.held).toBe(1)
    await lock.free()
    expect(h.locker.stats().held).toBe(0)
  })

  it('elect: one leader at a time; when it stops, the other campaign leads', async () => {
    const first = h.locker.elect('leader')
    expect(await eventually(() => first.isLeader, 10_000, 10)).toBe(true)
    const second = h.other.elect('leader')
    await sleep(50)
    expect(second.isLeader).toBe(false)
    await first.stop()
    expect(await eventually(() => second.isLeader, 10_000, 10)).toBe(true)
    await second.stop()
  })

  it('close(): held locks are freed without a lost signal; later calls reject as closed', async () => {
    const lock = await h.locker.lock('closing')
    const { signal } = lock
    await h.locker.close()
    expect(lock.locked).toBe(false)
    expect(signal.aborted).toBe(false)
    const err = await h.locker.lock('after-close').catch((e) => e)
    expect(err).toBeInstanceOf(MongoLocksError)
    expect(err.closed).toBe(true)
    expect(err.message).toBe('mongo-locks-native: this LockManager is closed')
    if (h.other !== h.locker) {
      const next = await h.other.lock('closing')
      expect(next).not.toBeNull()
      await next.free()
    }
  })

  it.runIf(awaitUsing)('await using frees the lock at the end of the block and skips a null one', async () => {
    const seen = await awaitUsing(h.locker, 'using')
    expect(seen).toMatchObject({ inside: true, other: null, after: false, none: null })
    expect(h.locker.stats().held).toBe(0)
  })

  describe('once()', () => {
    const deferred = () => {
      let resolve
      const promise = new Promise((r) => { resolve = r })
      return { promise, resolve }
    }
    /** fn of a run that goes on until `gate` opens: `started` resolves to what fn was given. */
    const heldRun = (result) => {
      const gate = deferred()
      const started = deferred()
      const fn = vi.fn(async (ctx) => {
        started.resolve(ctx)
        await gate.promise
        return result
      })
      return { fn, open: () => gate.resolve(), started: started.promise }
    }
    // The size as BSON of the stored `{ value }`, by the mongodb package's own count.
    const bsonBytes = (value) => BSON.calculateObjectSize({ value })

    it('runs fn once, and later calls from any instance get its result as stored: what survives storage comes back', async () => {
      const fn = vi.fn(async () => ({
        total: 1250,
        ratio: 0.5,
        negative: -0,
        big: 2n ** 40n,
        issued: new Date(1_700_000_000_000),
        pdf: Buffer.from('%PDF'),
        raw: new Uint8Array([1, 2]),
        lines: [1, 'a', null, undefined],
        matrix: [[1, 2], [3]],
        meta: { ok: true, dropped: undefined, 'v1.2': 'dotted' },
      }))
      const first = await h.locker.once('invoice-7', fn)
      expect(fn).toHaveBeenCalledTimes(1)
      const { signal, fencingToken } = fn.mock.calls[0][0]
      expect(signal).toBeInstanceOf(AbortSignal)
      expect(signal.aborted).toBe(false)
      expect(typeof fencingToken).toBe('bigint')
      expect(first.meta).toHaveProperty('dropped') // the caller that ran gets fn's own value
      const stored = {
        total: 1250,
        ratio: 0.5,
        negative: -0,
        big: 2n ** 40n,
        issued: new Date(1_700_000_000_000),
        pdf: Buffer.from('%PDF'),
        raw: Buffer.from([1, 2]),
        lines: [1, 'a', null, null],
        matrix: [[1, 2], [3]],
        meta: { ok: true, 'v1.2': 'dotted' },
      }
      for (const replayed of [await h.locker.once('invoice-7', fn), await h.other.once('invoice-7', fn)]) {
        expect(replayed).toStrictEqual(stored)
        expect(Object.is(replayed.negative, -0)).toBe(true)
        expect(Buffer.isBuffer(replayed.raw)).toBe(true)
      }
      expect(fn).toHaveBeenCalledTimes(1)
      // undefined is a result too: stored as none, given back as undefined, not run again.
      const nothing = vi.fn(async () => undefined)
      expect(await h.locker.once('invoice-8', nothing)).toBeUndefined()
      expect(await h.other.once('invoice-8', nothing)).toBeUndefined()
      expect(nothing).toHaveBeenCalledTimes(1)
      expect(h.locker.stats().held).toBe(0)
    })

    it('a call while the run is in progress: OnceInProgressError at once without waitMs; after waitMs; with a longer waitMs, the run\'s result', async () => {
      const run = heldRun('paid')
      const running = h.locker.once('payment-9', run.fn)
      await run.started
      expect(h.locker.stats().held).toBe(1) // the run holds its record as a lock
      const err = await h.other.once('payment-9', run.fn).catch((e) => e)
      expect(err).toBeInstanceOf(OnceInProgressError)
      expect(err).toMatchObject({ name: 'OnceInProgressError', code: 'ONCE_IN_PROGRESS', key: 'payment-9', waitMs: 0 })
      expect(err.message).toBe('mongo-locks-native: once("payment-9") is running elsewhere; try again later')
      let settled = false
      const short = h.other.once('payment-9', run.fn, { waitMs: 300 }).catch((e) => e).finally(() => { settled = true })
      expect(await h.waitFor(() => settled, 400)).toBe(true)
      const late = await short
      expect(late).toBeInstanceOf(OnceInProgressError)
      expect(late.waitMs).toBe(300)
      expect(late.message).toBe('mongo-locks-native: once("payment-9") is running elsewhere and did not finish within waitMs (300 ms); try again later')
      let answered = false
      const waiting = h.other.once('payment-9', run.fn, { waitMs: 30_000 }).finally(() => { answered = true })
      const controller = new AbortController()
      const cancelled = h.other.once('payment-9', run.fn, { waitMs: 30_000, signal: controller.signal })
      const reason = new Error('the client went away')
      controller.abort(reason)
      await expect(cancelled).rejects.toBe(reason)
      run.open()
      expect(await running).toBe('paid')
      // The waiter reads the outcome soon after the run ends, well before its waitMs.
      expect(await h.waitFor(() => answered, 1000)).toBe(true)
      expect(await waiting).toBe('paid')
      expect(run.fn).toHaveBeenCalledTimes(1)
      expect(h.locker.stats().held).toBe(0)
    })

    it('payload: the same payload (fields in any order) or none replays; another payload is refused with OnceMismatchError and runs nothing', async () => {
      const fn = vi.fn(async () => ({ refund: 'r-1' }))
      await h.locker.once('refund-1', fn, { payload: { amount: 10, currency: 'GBP' } })
      expect(await h.other.once('refund-1', fn, { payload: { currency: 'GBP', amount: 10 } })).toEqual({ refund: 'r-1' })
      expect(await h.locker.once('refund-1', fn)).toEqual({ refund: 'r-1' }) // a call without a payload is not compared
      const err = await h.other.once('refund-1', fn, { payload: { amount: 11, currency: 'GBP' } }).catch((e) => e)
      expect(err).toBeInstanceOf(OnceMismatchError)
      expect(err).toMatchObject({ name: 'OnceMismatchError', code: 'ONCE_PAYLOAD_MISMATCH', key: 'refund-1' })
      expect(err.message).toBe('mongo-locks-native: once("refund-1") ran before with a different payload; nothing ran. Use a new key for a different request')
      expect(fn).toHaveBeenCalledTimes(1)
      expect((await h.locker.inspectOnce('refund-1')).payloadHash).toBe(fingerprint({ amount: 10, currency: 'GBP' }))
      // A record stored without a payload matches any.
      const bare = vi.fn(async () => 'done')
      await h.locker.once('refund-2', bare)
      expect(await h.other.once('refund-2', bare, { payload: { amount: 99 } })).toBe('done')
      expect(bare).toHaveBeenCalledTimes(1)
    })

    it('a failed run: the caller gets its own error and nothing is kept; rememberErrors keeps its name, message and code for later calls', async () => {
      const declined = Object.assign(new Error('card declined'), { name: 'PaymentError', code: 'DECLINED' })
      const failing = vi.fn(async () => { throw declined })
      await expect(h.locker.once('charge-1', failing)).rejects.toBe(declined)
      expect(await h.locker.inspectOnce('charge-1')).toBeNull()
      expect(await h.other.once('charge-1', async () => 'charged')).toBe('charged') // runs again

      await expect(h.locker.once('charge-2', failing, { rememberErrors: true })).rejects.toBe(declined)
      expect(await h.locker.inspectOnce('charge-2')).toMatchObject({ state: 'failed', resultBytes: BSON.calculateObjectSize({ name: 'PaymentError', message: 'card declined', code: 'DECLINED' }) })
      for (const options of [{ rememberErrors: true }, undefined]) {
        const err = await h.other.once('charge-2', failing, options).catch((e) => e)
        expect(err).toBeInstanceOf(OnceFailedError)
        expect(err).toMatchObject({ name: 'OnceFailedError', code: 'ONCE_FAILED', key: 'charge-2' })
        expect(err.message).toBe('mongo-locks-native: once("charge-2") ran before and failed (PaymentError: card declined); rememberErrors keeps that failure until the record expires')
        expect(err.cause).toBeInstanceOf(Error)
        expect(err.cause).toMatchObject({ name: 'PaymentError', message: 'card declined', code: 'DECLINED' })
      }
      expect(failing).toHaveBeenCalledTimes(2)
    })

    it('a result it cannot store: TypeError naming the path, nothing kept, the next call runs', async () => {
      const err = await h.locker.once('report-1', async () => ({ rows: new Map([[1, 2]]) })).catch((e) => e)
      expect(err).toBeInstanceOf(TypeError)
      expect(err.message).toBe('mongo-locks-native: once() cannot store the result: the result.rows is a Map; it stores plain objects, arrays, strings, numbers, bigints (64-bit), booleans, null, Dates and Buffers (or Uint8Arrays)')
      const dollar = await h.locker.once('report-1', async () => ({ $set: 1 })).catch((e) => e)
      expect(dollar).toBeInstanceOf(TypeError)
      expect(dollar.message).toMatch(/^mongo-locks-native: once\(\) cannot store the result: the result\.\$set has a field name that starts with '\$'/)
      expect(await h.locker.inspectOnce('report-1')).toBeNull()
      expect(await h.other.once('report-1', async () => ({ rows: [[1, 2]] }))).toEqual({ rows: [[1, 2]] })
      expect(h.locker.stats().held).toBe(0)
    })

    it('a result over maxResultBytes: RangeError with its size as BSON, nothing kept, the next call runs', async () => {
      const big = 'x'.repeat(200)
      const err = await h.locker.once('export-1', async () => big, { maxResultBytes: 100 }).catch((e) => e)
      expect(err).toBeInstanceOf(RangeError)
      expect(bsonBytes(big)).toBe(217)
      expect(err.message).toBe('mongo-locks-native: once("export-1") ran, but its result takes 217 bytes as BSON, over maxResultBytes (100); it was not stored, so the next call runs again')
      expect(await h.locker.inspectOnce('export-1')).toBeNull()
      expect(await h.other.once('export-1', async () => big, { maxResultBytes: 217 })).toBe(big)
      expect((await h.locker.inspectOnce('export-1')).resultBytes).toBe(217)
    })

    it('a finished record lives ttlMs: replayed until then, and the next call after it runs again with a higher fencing token', async () => {
      let runs = 0
      const fn = async ({ fencingToken }) => ({ run: ++runs, token: fencingToken })
      const options = { ttlMs: 1500 }
      const first = await h.locker.once('nightly-email', fn, options)
      expect(await h.other.once('nightly-email', fn, options)).toEqual(first)
      const view = await h.locker.inspectOnce('nightly-email')
      expect(view.expiresAt.getTime() - view.completedAt.getTime()).toBe(1500)
      const second = await h.waitFor(async () => {
        const seen = await h.locker.once('nightly-email', fn, options)
        return seen.run === 2 && seen
      }, 1600)
      expect(second).toMatchObject({ run: 2 })
      expect(second.token).toBeGreaterThan(first.token)
      // A finished record past its ttlMs is replaced, not taken over from a dead run.
      expect(h.locker.stats()).toMatchObject({ onceRuns: 2, onceTakeovers: 0 })
    })

    it('the record deleted while its run goes on: the run\'s signal aborts, and its end rejects with LockLostError carrying the result, nothing stored', async () => {
      const run = heldRun({ moved: 100 })
      const running = h.locker.once('transfer-3', run.fn).catch((e) => e)
      const { signal } = await run.started
      await h.removeDocument({ _once: 'transfer-3' })
      expect(await h.waitFor(() => signal.aborted, OPTIONS.refreshMs * 2)).toBe(true)
      expect(signal.reason).toBeInstanceOf(LockLostError)
      expect(signal.reason.message).toBe('mongo-locks-native: lost the lock on "{ \\"_once\\": \\"transfer-3\\" }": its document is gone (deleted, or taken over after it expired)')
      run.open()
      const err = await running
      expect(err).toBeInstanceOf(LockLostError)
      expect(err.result).toEqual({ moved: 100 })
      expect(err.message).toBe('mongo-locks-native: once("transfer-3") ran, but its record was taken over before the outcome was stored (this run\'s lock was lost: the process was paused or cut off from the server past ttlMs); the outcome was not stored, and the run that took over is the one that counts')
      expect(await h.locker.inspectOnce('transfer-3')).toBeNull()
      expect(h.locker.stats()).toMatchObject({ held: 0, lost: 1 })
      expect(await h.other.once('transfer-3', async () => 'again')).toBe('again')
    })

    it('inspectOnce: null for no record; a run in progress; a finished record with its times, size and fingerprint', async () => {
      expect(await h.locker.inspectOnce('audit-1')).toBeNull()
      const run = heldRun({ ok: true })
      const running = h.locker.once('audit-1', run.fn, { payload: { id: 1 }, ttlMs: 60_000 })
      const { fencingToken } = await run.started
      const during = await h.other.inspectOnce('audit-1')
      expect(during).toMatchObject({ state: 'running', holder: { pid: process.pid }, completedAt: null, resultBytes: null, payloadHash: null })
      expect(Object.keys(during).sort()).toEqual(['ageMs', 'completedAt', 'createdAt', 'expiresAt', 'expiresInMs', 'fencingToken', 'holder', 'payloadHash', 'resultBytes', 'state'])
      expect(BigInt(during.fencingToken)).toBe(fencingToken)
      expect(during.createdAt).toBeInstanceOf(Date)
      expect(during.expiresAt).toBeInstanceOf(Date)
      expect(during.expiresInMs).toBeGreaterThan(0)
      expect(during.expiresInMs).toBeLessThanOrEqual(OPTIONS.ttlMs) // a running record lives one manager ttl past its last refresh
      expect(during.ageMs).toBeGreaterThanOrEqual(0)
      run.open()
      await running
      const done = await h.other.inspectOnce('audit-1')
      expect(done).toMatchObject({ state: 'completed', holder: { pid: process.pid }, payloadHash: fingerprint({ id: 1 }), resultBytes: bsonBytes({ ok: true }) })
      expect(BigInt(done.fencingToken)).toBe(fencingToken)
      expect(done.createdAt).toEqual(during.createdAt)
      expect(done.completedAt.getTime()).toBeGreaterThanOrEqual(done.createdAt.getTime())
      expect(done.expiresAt.getTime() - done.completedAt.getTime()).toBe(60_000)
      expect(done.expiresInMs).toBeGreaterThan(50_000)
      expect(done.expiresInMs).toBeLessThanOrEqual(60_000)
      await expect(h.locker.inspectOnce('')).rejects.toThrow('mongo-locks-native: invalid lock key "": the empty string is not a key; expected a non-empty string, a finite number, an array or a plain object')
    })

    it('stats: onceRuns, onceReplays, onceMismatches, onceTakeovers, in stats() and metricsSnapshot()', async () => {
      const fn = vi.fn(async () => 'ok')
      await h.locker.once('counted-1', fn, { payload: 1 })
      await h.locker.once('counted-1', fn, { payload: 1 })
      await h.locker.once('counted-1', fn)
      await expect(h.locker.once('counted-1', fn, { payload: 2 })).rejects.toThrow(OnceMismatchError)
      await h.locker.once(['counted', 2], fn)
      const expected = { held: 0, acquired: 2, onceRuns: 2, onceReplays: 2, onceMismatches: 1, onceTakeovers: 0 }
      expect(h.locker.stats()).toMatchObject(expected)
      expect(h.locker.metricsSnapshot().counters).toMatchObject(expected)
      expect(fn).toHaveBeenCalledTimes(2)
    })

    const fn = () => 'ran'
    const STORES = 'plain objects, arrays, strings, numbers, bigints (64-bit), booleans, null, Dates and Buffers (or Uint8Arrays)'
    it.each([
      ['a fn that is not a function', (l) => l.once('k', 'run'), 'mongo-locks-native: once(key, fn) needs fn, a function, got "run"'],
      ['options that are not an object', (l) => l.once('k', fn, 5), 'mongo-locks-native: the options of once() must be an object, got 5'],
      ['an unknown option', (l) => l.once('k', fn, { ttl: 5 }), 'mongo-locks-native: unknown option "ttl" of once(); expected one of payload, ttlMs, waitMs, signal, maxResultBytes, rememberErrors'],
      ['ttlMs 0', (l) => l.once('k', fn, { ttlMs: 0 }), 'mongo-locks-native: options.ttlMs must be a whole number of milliseconds from 1 to 2147483647, got 0'],
      ['a negative waitMs', (l) => l.once('k', fn, { waitMs: -1 }), 'mongo-locks-native: options.waitMs must be a whole number of milliseconds from 0 to 2147483647, got -1'],
      ['maxResultBytes over 15 MiB', (l) => l.once('k', fn, { maxResultBytes: 15 * 1024 * 1024 + 1 }), 'mongo-locks-native: options.maxResultBytes must be a whole number of bytes from 1 to 15728640, got 15728641'],
      ['rememberErrors that is not a boolean', (l) => l.once('k', fn, { rememberErrors: 'yes' }), 'mongo-locks-native: options.rememberErrors must be true or false, got "yes"'],
      ['a signal that is not one', (l) => l.once('k', fn, { signal: {} }), 'mongo-locks-native: options.signal must be an AbortSignal, got {}'],
      ['a payload it cannot store', (l) => l.once('k', fn, { payload: { at: new Map() } }), `mongo-locks-native: once() cannot store the payload: options.payload.at is a Map; it stores ${STORES}`],
      ['an empty key', (l) => l.once('', fn), 'mongo-locks-native: invalid lock key "": the empty string is not a key; expected a non-empty string, a finite number, an array or a plain object'],
      ['a key with a $ field', (l) => l.once({ $where: 1 }, fn), 'mongo-locks-native: invalid lock key {"$where":1}: field name "$where" starts with \'$\', which MongoDB reads as an operator; expected a non-empty string, a finite number, an array or a plain object'],
    ])('rejects %s with the same TypeError, running and storing nothing', async (_, call, message) => {
      const err = await call(h.locker).catch((e) => e)
      expect(err).toBeInstanceOf(TypeError)
      expect(err.message).toBe(message)
      expect(await h.locker.inspectOnce('k')).toBeNull()
      expect(h.locker.stats()).toMatchObject({ held: 0, acquired: 0, onceRuns: 0 })
    })
  })

  describe('the rules the Rust core owns', () => {
    const KEY = '; expected a non-empty string, a finite number, an array or a plain object'
    const deep = JSON.parse('['.repeat(17) + '1' + ']'.repeat(17))
    it.each([
      ['a NUL in a key string, written \\0', 'a\0b', 'mongo-locks-native: invalid lock key "a\\0b": a key string cannot contain a NUL character' + KEY],
      ['a NUL in a field name, written \\0 where Rust writes the name', { ['a\0b']: 1 }, 'mongo-locks-native: invalid lock key {"a\\u0000b":1}: field name "a\\0b" contains a NUL character' + KEY],
      ['NaN', NaN, 'mongo-locks-native: invalid lock key NaN: NaN is not a finite number' + KEY],
      ['-Infinity', -Infinity, 'mongo-locks-native: invalid lock key -Infinity: -inf is not a finite number' + KEY],
      ['a key nested 17 deep', deep, `mongo-locks-native: invalid lock key ${JSON.stringify(deep)}: nested deeper than 16 levels (or cyclic)` + KEY],
      ['a key over 1024 bytes of BSON', 'k'.repeat(1020), `mongo-locks-native: invalid lock key "${'k'.repeat(79)}…: it takes 1038 bytes as BSON, over the 1024-byte bound` + KEY],
      ['a nested function', { a: () => 1 }, 'mongo-locks-native: invalid lock key {}: a nested function cannot be stored' + KEY],
      ['a nested Date', { a: new Date(0) }, `mongo-locks-native: invalid lock key {"a":"1970-01-01T00:00:00.000Z"}: nested ${String(new Date(0))} is not a plain object` + KEY],
      ['a Symbol', Symbol('s'), 'mongo-locks-native: invalid lock key a Symbol: symbols cannot be stored' + KEY],
      ['a BigInt', 10n, 'mongo-locks-native: invalid lock key a BigInt: this type cannot be stored as a key' + KEY],
      ['a boolean', true, 'mongo-locks-native: invalid lock key true: this type cannot be stored as a key' + KEY],
    ])('key checks: %s is refused with the same message', async (_, key, message) => {
      const err = await h.locker.lock(key).catch((e) => e)
      expect(err).toBeInstanceOf(TypeError)
      expect(err.message).toBe(message)
      expect(h.locker.stats()).toMatchObject({ held: 0, acquired: 0 })
    })

    it('key checks: strings in messages are written as Rust writes them, control characters and quotes escaped', async () => {
      const name = 'x\u0001y\u007f\u2028\t"\\\0'
      const err = await h.locker.lock('k', { [name]: 1 }).catch((e) => e)
      expect(err.message).toBe('mongo-locks-native: unknown lock option "x\\u{1}y\\u{7f}\\u{2028}\\t\\"\\\\\\0"; expected one of waitMs, signal, onLost, maxHoldMs, fencing, minHoldMs')
      expect(err.message).toBe(rules.messages.unknownOption('lock option', name, rules.LOCK_OPTIONS))
      await expect(h.locker.lockAll(['a"b', 'a"b'])).rejects.toThrow('mongo-locks-native: lockAll(keys) got the key "a"b" twice; each key can be locked once')
    })

    it.each([
      ['appName: \'\' (an empty holder.app would name no application)', { appName: '' }, 'mongo-locks-native: options.appName must be a non-empty string, got ""'],
      ['appName that is not a string', { appName: 5 }, 'mongo-locks-native: options.appName must be a non-empty string, got 5'],
      ['ttlMs 0', { ttlMs: 0 }, 'mongo-locks-native: options.ttlMs must be a whole number of milliseconds from 1 to 2147483647, got 0'],
      ['refreshMs not below ttlMs', { ttlMs: 1000, refreshMs: 1000 }, 'mongo-locks-native: options.refreshMs (1000) must be less than options.ttlMs (1000), or locks would expire between refreshes'],
      ['ttlMs 1, whose default refreshMs (ttlMs / 6, at least 1) is not below it', { ttlMs: 1 }, 'mongo-locks-native: options.refreshMs (1) must be less than options.ttlMs (1), or locks would expire between refreshes'],
    ])('options: %s is refused with the same TypeError', (_, options, message) => {
      let err
      try {
        h.make(options)
      } catch (e) {
        err = e
      }
      expect(err).toBeInstanceOf(TypeError)
      expect(err.message).toBe(message)
    })

    it('options: a non-empty appName is the holder.app of the locks', async () => {
      const named = h.make({ ...OPTIONS, appName: 'billing' })
      const lock = await named.lock('named-holder')
      expect(lock.holder.app).toBe('billing')
      await lock.free()
    })

    it('the refresh default: every ttlMs / 6 when only ttlMs is set (ttlMs 6000: every second)', async () => {
      const locker = h.make({ ttlMs: 6000 })
      const lock = await locker.lock('refreshed-by-default')
      // Count the refreshes seen in 4.5 s (the expiry moving forward): every
      // second gives 4; ttlMs / 3 would give 2, the 10 s default none. The
      // bounds leave each refresh half a second of slack on a loaded machine.
      let refreshes = 0
      let last = (await locker.inspect('refreshed-by-default')).expiresInMs
      const seen = [last]
      for (let t = 0; t < 4500; t += 100) {
        await h.tick(100)
        const left = (await locker.inspect('refreshed-by-default')).expiresInMs
        if (left > last + 300) refreshes++
        last = left
        seen.push(left)
      }
      expect(refreshes, seen.join()).toBeGreaterThanOrEqual(3)
      expect(refreshes, seen.join()).toBeLessThanOrEqual(6)
      await lock.free()
    }, 30_000)

    it('the permit limit: 1 to 1000 permits or readers, and the same TypeError past it', async () => {
      const most = await h.locker.semaphore('wide', { limit: 1000 }).acquire()
      expect(most).not.toBeNull()
      await most.free()
      expect(() => h.locker.semaphore('wide', { limit: 1001 })).toThrow('mongo-locks-native: limit must be a whole number from 1 to 1000, got 1001')
      expect(() => h.locker.semaphore('wide', { limit: 0 })).toThrow('mongo-locks-native: limit must be a whole number from 1 to 1000, got 0')
      expect(() => h.locker.readWriteLock('wide', { maxReaders: 1001 })).toThrow('mongo-locks-native: maxReaders must be a whole number from 1 to 1000, got 1001')
      expect(h.locker.readWriteLock('wide').maxReaders).toBe(64)
      const reader = await h.locker.readWriteLock('wide', { maxReaders: 1000 }).read()
      expect(reader).not.toBeNull()
      await reader.free()
    })

    it('the documents of permits and read/write sides: { _semaphore, permit }, { _rwlock, writer: true }, { _rwlock, reader }, keys as lock() stores them', async () => {
      const permit = await h.locker.semaphore(['org', 7], { limit: 3 }).acquire()
      expect(Object.keys(permit.action)).toEqual(['_semaphore', 'permit'])
      expect(permit.action).toEqual({ _semaphore: { _key_array: ['org', 7] }, permit: expect.any(Number) })
      expect(permit.action).toEqual(rules.slotAction('permit', { _key_array: ['org', 7] }, permit.action.permit))
      const rw = h.locker.readWriteLock('shelf')
      const reader = await rw.read()
      expect(Object.keys(reader.action)).toEqual(['_rwlock', 'reader'])
      expect(reader.action).toEqual(rules.slotAction('reader', 'shelf', reader.action.reader))
      await reader.free()
      const writer = await rw.write()
      expect(Object.keys(writer.action)).toEqual(['_rwlock', 'writer'])
      expect(writer.action).toEqual({ _rwlock: 'shelf', writer: true })
      expect(writer.action).toEqual(rules.slotAction('writer', 'shelf'))
      await writer.free()
      await permit.free()
    })

    it('histogram bounds and the index names ready resolves to', async () => {
      const snap = h.locker.metricsSnapshot()
      for (const name of ['acquireSeconds', 'waitSeconds', 'refreshSeconds']) {
        expect(snap[name].bounds).toEqual([0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30])
      }
      expect(snap.holdSeconds.bounds).toEqual([0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600])
      expect(await h.locker.ready).toEqual(['action_1', 'expiresAt_1'])
    })
  })

})

// Counters are read by name (dashboards, the metrics module): both lockers
// must name the same ones.
describe('stats() and metricsSnapshot().counters name the same counters on both lockers', () => {
  it('the same names', async () => {
    const ctx = await freshCollection('conformance-stats')
    const real = new lib.LockManager(ctx.collection, { logger: false, ...OPTIONS })
    const test = createTestLocker(OPTIONS)
    try {
      expect(Object.keys(test.stats()).sort()).toEqual(Object.keys(real.stats()).sort())
      expect(Object.keys(test.metricsSnapshot().counters).sort()).toEqual(Object.keys(real.metricsSnapshot().counters).sort())
      expect(Object.keys(real.stats())).toEqual(expect.arrayContaining(['onceRuns', 'onceReplays', 'onceMismatches', 'onceTakeovers']))
    } finally {
      await test.close()
      await real.close()
      await ctx.close()
    }
  })
})

// The Rust core checks the permit limit itself, beneath primitives.js: the
// same bound and message as lib/rules.js, which primitives.js and the test
// locker read.
describe('LockManager on the test server: the Rust permit limit is rules.js\'s', () => {
  let ctx, locker
  beforeEach(async () => {
    ctx = await freshCollection('conformance-limit')
    locker = new lib.LockManager(ctx.collection, { logger: false, ...OPTIONS })
  })
  afterEach(async () => {
    await locker.close()
    await ctx.close()
  })

  it('acquirePermit and acquireRw take MAX_SLOTS and refuse one more with the same message', async () => {
    const permit = await locker.acquirePermit('raw', rules.MAX_SLOTS)
    expect(permit).not.toBeNull()
    await permit.free()
    await expect(locker.acquirePermit('raw', rules.MAX_SLOTS + 1)).rejects.toThrow(rules.messages.count('limit', rules.MAX_SLOTS + 1))
    await expect(locker.acquireRw('raw', rules.MAX_SLOTS + 1, false)).rejects.toThrow(rules.messages.count('maxReaders', rules.MAX_SLOTS + 1))
    const reader = await locker.acquireRw('raw-rw', rules.MAX_SLOTS, false)
    expect(reader).not.toBeNull()
    await reader.free()
  })
})
