// locker.once(key, fn) against the real server, on every way to make a
// manager: a run per key while its record lives, replays of the stored
// result (what survives storage), concurrent calls, payload mismatches,
// failures kept or not, results that cannot be stored, bad input refused
// before anything is written, the record's expiry and the sweep of expired
// records. Crashes, pauses and the torture run are in faults/.
import { describe, it, expect } from 'vitest'
import { lib, sleep, useLocker, eventually, MANAGER_KINDS } from '../support/suite.mjs'
import { stockLockManager } from '../support/stock-mongo-locks.mjs'

const { LockManager, OnceInProgressError, OnceMismatchError, OnceFailedError, LockLostError } = lib

/** A function that counts its runs and returns `value` (or what `make(run)` returns). */
function counted(make) {
  const fn = async (run) => {
    fn.runs.push(run)
    return make(run)
  }
  fn.runs = []
  return fn
}

for (const kind of Object.keys(MANAGER_KINDS)) {
  describe(`once() on a manager made by ${kind}`, () => {
    const t = useLocker('once', undefined, kind)

    it('runs fn once and replays its stored result, with what survives storage', async () => {
      const value = {
        id: 42,
        amount: 19.99,
        big: 2n ** 40n,
        at: new Date('2026-12-07T10:00:00.123Z'),
        receipt: Buffer.from([0, 1, 2, 255]),
        tags: ['a', null, undefined, { deep: [1, [2]] }],
        'sort.code': '01-02-03',
        missing: undefined,
        empty: {},
        ok: true,
        nothing: null,
      }
      const fn = counted(() => value)
      const first = await t.locker.once('bank-details-42', fn, { payload: { sortCode: '01-02-03' } })
      expect(first).toBe(value)
      const replayed = await t.locker.once('bank-details-42', fn, { payload: { sortCode: '01-02-03' } })
      expect(fn.runs).toHaveLength(1)
      expect(replayed).toEqual({
        id: 42,
        amount: 19.99,
        big: 2n ** 40n,
        at: new Date('2026-12-07T10:00:00.123Z'),
        receipt: Buffer.from([0, 1, 2, 255]),
        tags: ['a', null, null, { deep: [1, [2]] }],
        'sort.code': '01-02-03',
        empty: {},
        ok: true,
        nothing: null,
      })
      expect(replayed.at).toBeInstanceOf(Date)
      expect(Buffer.isBuffer(replayed.receipt)).toBe(true)
      expect('missing' in replayed).toBe(false)
      // Stored as BSON bytes: the size lib/once.js measured is the size stored.
      const doc = await t.ctx.collection.findOne({ 'action._once': 'bank-details-42' })
      expect((await t.locker.inspectOnce('bank-details-42')).resultBytes).toBe(doc.result.length())
      // A function returning nothing replays nothing.
      const none = counted(() => undefined)
      expect(await t.locker.once('void', none)).toBeUndefined()
      expect(await t.locker.once('void', none)).toBeUndefined()
      expect(none.runs).toHaveLength(1)
    })

    it('hands fn a fencing token and a live signal, and keeps the record apart from the locks of the same key', async () => {
      const fn = counted((run) => ({ token: run.fencingToken, aborted: run.signal.aborted }))
      const { token, aborted } = await t.locker.once('payment-7', fn)
      expect(typeof token).toBe('bigint')
      expect(token > 0n).toBe(true)
      expect(aborted).toBe(false)
      // The record is not a lock: the key is free to lock, and held by nobody.
      const lock = await t.locker.lock('payment-7')
      expect(lock).not.toBeNull()
      await lock.free()
      expect(t.locker.held).toBe(0)
      const record = await t.locker.inspectOnce('payment-7')
      expect(record).toMatchObject({ state: 'completed', fencingToken: Number(token), holder: { pid: process.pid } })
      expect(record.resultBytes).toBeGreaterThan(0)
      expect(record.completedAt).toBeInstanceOf(Date)
      // A day by default.
      expect(record.expiresAt - record.completedAt).toBe(24 * 60 * 60 * 1000)
      const doc = await t.ctx.collection.findOne({ 'action._once': 'payment-7' })
      expect(doc).toMatchObject({ state: 'completed', ranBy: { pid: process.pid } })
      expect(doc.holder).toBeUndefined()
    })

    it('a concurrent call gets OnceInProgressError without waitMs, the result with it, and nothing runs twice', async () => {
      let release
      const gate = new Promise((r) => (release = r))
      const fn = counted(async () => {
        await gate
        return 'paid'
      })
      const first = t.locker.once('payment-8', fn)
      await eventually(() => fn.runs.length === 1)
      const refused = await t.locker.once('payment-8', fn).catch((e) => e)
      expect(refused).toBeInstanceOf(OnceInProgressError)
      expect(refused).toMatchObject({ code: 'ONCE_IN_PROGRESS', key: 'payment-8' })
      expect((await t.locker.inspectOnce('payment-8')).state).toBe('running')
      const waiting = t.locker.once('payment-8', fn, { waitMs: 10_000 })
      await sleep(100)
      release()
      expect(await first).toBe('paid')
      expect(await waiting).toBe('paid')
      expect(fn.runs).toHaveLength(1)
    })

    it('refuses the key with another payload (OnceMismatchError), running nothing; field order does not matter', async () => {
      const fn = counted(() => 'ok')
      await t.locker.once('order-1', fn, { payload: { amount: 10, currency: 'GBP' } })
      expect(await t.locker.once('order-1', fn, { payload: { currency: 'GBP', amount: 10 } })).toBe('ok')
      const refused = await t.locker.once('order-1', fn, { payload: { amount: 11, currency: 'GBP' } }).catch((e) => e)
      expect(refused).toBeInstanceOf(OnceMismatchError)
      expect(refused.code).toBe('ONCE_PAYLOAD_MISMATCH')
      expect(fn.runs).toHaveLength(1)
      expect(t.locker.stats()).toMatchObject({ onceRuns: 1, onceReplays: 1, onceMismatches: 1 })
    })

    it('a failed fn leaves no record (the next call runs), unless rememberErrors keeps it', async () => {
      let fail = true
      const fn = counted(() => {
        if (fail) throw Object.assign(new Error('card declined'), { code: 'DECLINED' })
        return 'ok'
      })
      await expect(t.locker.once('charge-1', fn)).rejects.toThrow('card declined')
      expect(await t.locker.inspectOnce('charge-1')).toBeNull()
      fail = false
      expect(await t.locker.once('charge-1', fn)).toBe('ok')
      expect(fn.runs).toHaveLength(2)

      fail = true
      await expect(t.locker.once('charge-2', fn, { rememberErrors: true })).rejects.toThrow('card declined')
      const kept = await t.locker.once('charge-2', fn, { rememberErrors: true }).catch((e) => e)
      expect(kept).toBeInstanceOf(OnceFailedError)
      expect(kept.cause).toMatchObject({ name: 'Error', message: 'card declined', code: 'DECLINED' })
      expect(fn.runs).toHaveLength(3)
      expect((await t.locker.inspectOnce('charge-2')).state).toBe('failed')
    })

    it('a result that cannot be stored, or is too large, is refused with its reason and the next call runs again', async () => {
      const map = counted(() => ({ lines: new Map() }))
      const err = await t.locker.once('export-1', map).catch((e) => e)
      expect(err).toBeInstanceOf(TypeError)
      expect(err.message).toContain('the result.lines is a Map')
      expect(await t.locker.inspectOnce('export-1')).toBeNull()
      const big = counted(() => 'x'.repeat(2000))
      const tooLarge = await t.locker.once('export-2', big, { maxResultBytes: 1000 }).catch((e) => e)
      expect(tooLarge).toBeInstanceOf(RangeError)
      expect(tooLarge.message).toMatch(/takes 2\d\d\d bytes as BSON, over maxResultBytes \(1000\)/)
      expect(await t.locker.once('export-2', big, { maxResultBytes: 4000 })).toHaveLength(2000)
      expect(big.runs).toHaveLength(2)
    })

    it('refuses bad input with a TypeError naming it, and writes nothing', async () => {
      const fn = counted(() => 1)
      const cases = [
        [() => t.locker.once('k', 'not a function'), /once\(key, fn\) needs fn, a function, got "not a function"/],
        [() => t.locker.once('k', fn, { tllMs: 5 }), /unknown option "tllMs" of once\(\); expected one of payload, ttlMs/],
        [() => t.locker.once('k', fn, { ttlMs: 0 }), /options.ttlMs must be a whole number of milliseconds from 1/],
        [() => t.locker.once('k', fn, { waitMs: -1 }), /options.waitMs must be a whole number of milliseconds from 0/],
        [() => t.locker.once('k', fn, { payload: { f: () => 1 } }), /cannot store the payload: options.payload.f is a function/],
        [() => t.locker.once('k', fn, { rememberErrors: 'yes' }), /rememberErrors must be true or false, got "yes"/],
        [() => t.locker.once('k', fn, { maxResultBytes: 16 * 1024 * 1024 }), /maxResultBytes must be a whole number of bytes from 1 to 15728640/],
        [() => t.locker.once('', fn), /invalid lock key "": the empty string is not a key/],
      ]
      for (const [call, message] of cases) {
        const err = await call().catch((e) => e)
        expect(err, String(message)).toBeInstanceOf(TypeError)
        expect(err.message).toMatch(message)
      }
      expect(fn.runs).toHaveLength(0)
      expect(await t.ctx.collection.countDocuments()).toBe(0)
    })

    it('a finished record lives ttlMs, then the key runs again with a higher fencing token', async () => {
      const fn = counted((run) => run.fencingToken)
      const first = await t.locker.once('report-1', fn, { ttlMs: 1500 })
      expect(await t.locker.once('report-1', fn, { ttlMs: 1500 })).toBe(first)
      await sleep(2500) // past its expiry by more than the server clock's uncertainty
      const second = await t.locker.once('report-1', fn, { ttlMs: 1500 })
      expect(fn.runs).toHaveLength(2)
      expect(second > first).toBe(true)
    })
  })
}

describe('once() records among locks', () => {
  const t = useLocker('once-shared', { ttlMs: 3000, refreshMs: 500 })

  it('a run longer than the ttl keeps its record (refreshed like a lock), and another manager waits for it', async () => {
    const other = new LockManager(t.ctx.collection, { logger: false, ttlMs: 3000, refreshMs: 500 })
    try {
      const fn = counted(async () => {
        await sleep(4500)
        return 'done'
      })
      const first = t.locker.once('slow', fn)
      await eventually(() => fn.runs.length === 1)
      await sleep(3500) // past one ttl: the record is still this run's
      await expect(other.once('slow', fn)).rejects.toBeInstanceOf(OnceInProgressError)
      expect(await other.once('slow', fn, { waitMs: 10_000 })).toBe('done')
      expect(await first).toBe('done')
      expect(fn.runs).toHaveLength(1)
      expect(fn.runs[0].signal.aborted).toBe(false)
      expect(t.locker.stats().lost).toBe(0)
    } finally {
      await other.close()
    }
  })

  it('held locks and a stock mongo-locks client beside records: refreshes go on, records stay finished', async () => {
    const { locker: stock } = await stockLockManager(t.ctx.db, t.ctx.collection)
    const stockLock = await stock.lock('stock-key')
    const lock = await t.locker.lock('plain')
    await t.locker.once('rec', () => 'r', { ttlMs: 600_000 })
    const before = await t.ctx.collection.findOne({ 'action._once': 'rec' })
    await sleep(1500) // three refresh rounds
    const after = await t.ctx.collection.findOne({ 'action._once': 'rec' })
    expect(after.expiresAt).toEqual(before.expiresAt)
    expect(after.refreshedAt).toEqual(before.refreshedAt)
    expect(lock.locked).toBe(true)
    expect(t.locker.stats().lost).toBe(0)
    await lock.free()
    await stockLock.free()
    expect(await t.locker.once('rec', () => 'other')).toBe('r')
  })

  it('no refresh round in flight undoes a completion: every run that said it stored its result left a finished record', async () => {
    // Rounds every 50 ms, so that many are in flight while runs complete.
    const busy = new LockManager(t.ctx.collection, { logger: false, ttlMs: 3000, refreshMs: 50 })
    try {
      const keys = Array.from({ length: 15 }, (_, i) => `busy-${i}`)
      const held = await busy.lock('held-beside') // the rounds have a lock to refresh all along
      for (let round = 0; round < 3; round++) {
        await Promise.all(keys.map((k) => busy.once(`${k}-${round}`, async () => {
          await sleep(100 + Math.random() * 300)
          return k
        })))
      }
      await sleep(300) // rounds still in flight land
      const records = await t.ctx.collection.find({ 'action._once': { $regex: '^busy-' } }).toArray()
      expect(records).toHaveLength(45)
      const unfinished = records.filter((r) => r.state !== 'completed' || r.holder !== undefined)
      expect(unfinished.map((r) => r.action._once)).toEqual([])
      await held.free()
    } finally {
      await busy.close()
    }
  })

  it('expired records are swept from the collection by a manager that runs once(), on a server without TTL indexes too', async () => {
    await t.locker.once('short-lived', () => 1, { ttlMs: 200 })
    await sleep(1200)
    // A new manager sweeps when it first runs once(), whatever the key.
    const other = new LockManager(t.ctx.collection, { logger: false })
    try {
      await other.once('another', () => 2)
      expect(await eventually(async () => (await t.ctx.collection.countDocuments({ 'action._once': 'short-lived' })) === 0)).toBe(true)
      expect(await t.ctx.collection.countDocuments({ 'action._once': 'another' })).toBe(1)
    } finally {
      await other.close()
    }
  })

  it('a record whose run was lost before it finished is not overwritten: the run gets LockLostError with its result', async () => {
    // The record is deleted under the run (as a takeover after a pause would): its completion must not land.
    const fn = async () => {
      await t.ctx.collection.deleteOne({ 'action._once': 'lost-run' })
      return 'late'
    }
    const err = await t.locker.once('lost-run', fn).catch((e) => e)
    expect(err).toBeInstanceOf(LockLostError)
    expect(err.result).toBe('late')
    expect(err.message).toContain('the outcome was not stored')
    expect(await t.ctx.collection.countDocuments()).toBe(0)
    expect(t.locker.held).toBe(0)
  })
})
