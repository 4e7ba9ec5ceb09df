// The primitives' behaviour in one process against the real server: what a
// caller sees (null, waiting, the documents left behind), bad input refused
// before anything is written. The multi-process checkers are in
// faults/primitives-across-processes.test.mjs.
import { describe, it, expect } from 'vitest'
import { lib, sleep, useLocker, eventually, MANAGER_KINDS } from '../support/suite.mjs'
import { stockLockManager } from '../support/stock-mongo-locks.mjs'

const { LockManager } = lib

for (const kind of Object.keys(MANAGER_KINDS)) {
describe(`made by ${kind}`, () => {
  describe('semaphore', () => {
    const t = useLocker('semaphore', { ttlMs: 3000, refreshMs: 1000 }, kind)

    it('hands out limit permits, then null; a freed permit is handed out again; permits are locks', async () => {
      const s = t.locker.semaphore('exports', { limit: 2 })
      const a = await s.acquire()
      const b = await s.acquire()
      expect(a.locked && b.locked).toBe(true)
      expect(await s.acquire()).toBeNull()
      expect(a.action).toMatchObject({ _semaphore: 'exports' })
      expect(await t.ctx.collection.countDocuments()).toBe(2)
      const waiting = s.acquire({ waitMs: 3000 })
      await sleep(50)
      expect(await a.free()).toBe(true)
      const c = await waiting
      expect(c).not.toBeNull()
      await b.free()
      await c.free()
      expect(await t.ctx.collection.countDocuments()).toBe(0)
    })

    it('processes that disagree on limit: each takes only slots below its own limit', async () => {
      const other = new LockManager(t.ctx.collection, { logger: false })
      try {
        const big = t.locker.semaphore('pool', { limit: 3 })
        const small = other.semaphore('pool', { limit: 1 })
        const held = [await big.acquire(), await big.acquire()]
        // The small one sees its single slot taken or not depending on which the big one took.
        const taken = held.map((p) => p.action.permit)
        const s = await small.acquire()
        expect(s === null).toBe(taken.includes(0))
        await s?.free()
        for (const p of held) await p.free()
        const first = await small.acquire()
        expect(first.action.permit).toBe(0)
        await first.free()
      } finally {
        await other.close()
      }
    })

    it('shares the collection with plain locks and stock mongo-locks on the same key', async () => {
      const { locker: stock } = await stockLockManager(t.ctx.db, t.ctx.collection)
      const plain = await t.locker.lock('exports')
      const stockHeld = await stock.lock('stock-exports')
      const permit = await t.locker.semaphore('exports', { limit: 1 }).acquire()
      const read = await t.locker.readWriteLock('exports').read()
      expect(plain && stockHeld && permit && read).toBeTruthy()
      expect(await stock.lock('exports')).toBeNull() // stock sees our plain lock, as ever
      expect(await t.ctx.collection.countDocuments()).toBe(4)
      for (const lock of [plain, permit, read]) await lock.free()
      await stockHeld.free()
      expect(await t.ctx.collection.countDocuments()).toBe(0)
    })
  })

  describe('read/write lock', () => {
    const t = useLocker('rwlock', { ttlMs: 3000, refreshMs: 1000 }, kind)

    it('readers share, a writer waits for them and keeps new readers out; readers get in after it', async () => {
      const rw = t.locker.readWriteLock('catalogue')
      const r1 = await rw.read()
      const r2 = await rw.read()
      expect(r1 && r2).toBeTruthy()
      expect(await rw.write()).toBeNull() // one attempt: readers hold
      expect(await t.ctx.collection.countDocuments({ 'action.writer': true })).toBe(0) // and it took its document back
      const writer = rw.write({ waitMs: 5000 })
      // Once its claim is on the server (not after a fixed time: a loaded
      // machine can take longer to send it)…
      const writerWaits = async () => (await t.ctx.collection.countDocuments({ 'action.writer': true })) === 1
      expect(await eventually(writerWaits, 5000, 10)).toBe(true)
      expect(await rw.read()).toBeNull() // …the waiting writer keeps readers out
      await r1.free()
      await r2.free()
      const w = await writer
      expect(w).not.toBeNull()
      expect(await rw.read()).toBeNull()
      const reader = rw.read({ waitMs: 5000 })
      await sleep(50)
      await w.free()
      const r3 = await reader
      expect(r3).not.toBeNull()
      await r3.free()
    })

    it('readers and writers waiting on one key in one process keep making progress', async () => {
      // 8 callers, 80% readers and 20% writers, taking turns for 3 s. A
      // reader polling in vain behind a waiting writer once kept that writer
      // asleep (waiters sharing one poller): 0–6 acquisitions in 3 s instead
      // of hundreds.
      const rw = t.locker.readWriteLock('mixed')
      let acquired = 0
      const end = Date.now() + 3000
      await Promise.all(Array.from({ length: 8 }, async (_, i) => {
        while (Date.now() < end) {
          const lock = await (i < 2 ? rw.write({ waitMs: 5000 }) : rw.read({ waitMs: 5000 }))
          if (!lock) continue
          acquired++
          await sleep(1)
          await lock.free()
        }
      }))
      expect(acquired).toBeGreaterThan(30)
    })

    it('a writer that gives up waiting frees its document at once (minHoldMs is for locks handed out), so readers are not kept out by it', async () => {
      const rw = t.locker.readWriteLock('catalogue')
      const r = await rw.read()
      expect(await rw.write({ waitMs: 300, minHoldMs: 60_000 })).toBeNull()
      expect(await t.ctx.collection.countDocuments({ 'action.writer': true })).toBe(0)
      const r2 = await rw.read()
      expect(r2).not.toBeNull()
      await r.free()
      await r2.free()
    })
  })

  describe('election', () => {
    const t = useLocker('election', { ttlMs: 3000, refreshMs: 1000 }, kind)

    it('a campaign whose manager is closed ends quietly: no onError, no retries, stop() resolves', async () => {
      const other = new LockManager(t.ctx.collection, { logger: false })
      try {
        const leader = await other.lock('leader')
        const errors = []
        const election = t.locker.elect('leader', { onError: (err) => errors.push(err) })
        await sleep(300) // campaigning: waiting for the key other holds
        await t.locker.close()
        // A campaign that did not see the rejection as "closed" would report
        // it and try again every second.
        await sleep(2500)
        expect(errors).toEqual([])
        expect(election.isLeader).toBe(false)
        const stopped = Date.now()
        await election.stop()
        expect(Date.now() - stopped).toBeLessThan(500)
        await leader.free()
      } finally {
        await other.close()
      }
    })
  })

  describe('minHoldMs', () => {
    const t = useLocker('min-hold', { ttlMs: 5000, refreshMs: 1000 }, kind)

    it('free() before minHoldMs keeps the key taken until it passes; free() after it deletes at once', async () => {
      const started = Date.now() // minHoldMs counts from the attempt that took it
      const lock = await t.locker.lock('nightly', { minHoldMs: 1500 })
      expect(await lock.free()).toBe(true)
      expect(lock.locked).toBe(false)
      expect(await t.locker.lock('nightly')).toBeNull() // still taken
      expect(await t.ctx.collection.countDocuments()).toBe(1)
      let next = null
      while (!next && Date.now() - started < 5000) {
        await sleep(50)
        next = await t.locker.lock('nightly')
      }
      expect(next).not.toBeNull()
      expect(Date.now() - started).toBeGreaterThanOrEqual(1500)
      await next.free()
      const late = await t.locker.lock('nightly', { minHoldMs: 100 })
      await sleep(300)
      expect(await late.free()).toBe(true)
      expect(await t.ctx.collection.countDocuments()).toBe(0)
    })
  })

  describe('bad input is refused, naming the value, and writes nothing', () => {
    const t = useLocker('primitives-bad-input', undefined, kind)

    it.each([
      ['a limit of 0', (l) => l.semaphore('k', { limit: 0 }), /limit must be a whole number from 1 to 1000, got 0/],
      ['a limit as a string', (l) => l.semaphore('k', { limit: '3' }), /limit must be a whole number from 1 to 1000, got "3"/],
      ['no limit', (l) => l.semaphore('k'), /semaphore\(key, \{ limit \}\) needs limit/],
      ['an unknown semaphore option', (l) => l.semaphore('k', { limit: 2, max: 3 }), /unknown option max of semaphore\(k\); expected limit/],
      ['maxReaders of 1.5', (l) => l.readWriteLock('k', { maxReaders: 1.5 }), /maxReaders must be a whole number from 1 to 1000, got 1.5/],
      ['an onElected that is not a function', (l) => l.elect('k', { onElected: 'yes' }), /option onElected must be a function, got string/],
      ['everyMs of 10', (l) => l.schedule('job', { everyMs: 10 }, () => {}), /everyMs must be a whole number of milliseconds from 100/],
      ['minHoldMs not below everyMs', (l) => l.schedule('job', { everyMs: 1000, minHoldMs: 1000 }, () => {}), /minHoldMs must be a whole number of milliseconds from 1 to everyMs - 1 \(999\), got 1000/],
    ])('%s', async (_, make, message) => {
      expect(() => make(t.locker)).toThrow(TypeError)
      expect(() => make(t.locker)).toThrow(message)
      expect(await t.ctx.collection.countDocuments()).toBe(0)
    })

    it.each([
      ['fencing on a permit', (l) => l.semaphore('k', { limit: 2 }).acquire({ fencing: true }), /options\.fencing is for exclusive locks .*a semaphore permit is shared/],
      ['fencing on a read lock', (l) => l.readWriteLock('k').read({ fencing: true }), /options\.fencing is for exclusive locks .*a read lock is shared/],
      ['a bad minHoldMs', (l) => l.lock('k', { minHoldMs: -1 }), /options\.minHoldMs must be a whole number of milliseconds from 1 to 2147483647, got -1/],
      ['a bad semaphore key', (l) => l.semaphore(null, { limit: 2 }).acquire(), /invalid lock key null: a lock needs a key/],
    ])('%s rejects', async (_, call, message) => {
      await expect(call(t.locker)).rejects.toThrow(TypeError)
      await expect(call(t.locker)).rejects.toThrow(message)
      expect(await t.ctx.collection.countDocuments()).toBe(0)
    })
  })

  describe('schedule', () => {
    const t = useLocker('schedule', { ttlMs: 3000, refreshMs: 1000 }, kind)

    it('runs the job once per interval, and stop() ends it', async () => {
      const runs = []
      const job = t.locker.schedule('report', { everyMs: 300 }, () => { runs.push(Date.now()) })
      expect(await eventually(() => runs.length >= 2, 10_000)).toBe(true)
      await job.stop()
      const done = runs.length
      await sleep(700)
      expect(runs.length).toBe(done)
    })
  })

  describe('no acquisition leaves a document without a handle', () => {
    const t = useLocker('hand-over', { ttlMs: 3000, refreshMs: 1000 }, kind)

    it.each([
      ['lock()', (l) => l.lock('k')],
      ['lockAll()', (l) => l.lockAll(['a', 'b', 'c'])],
      ['a semaphore permit', (l) => l.semaphore('s', { limit: 2 }).acquire()],
      ['a reader', (l) => l.readWriteLock('r').read()],
      ['a writer', (l) => l.readWriteLock('w').write()],
    ])('%s: when the step after the insert fails, the caller gets the error, and neither the document nor held remains', async (_, acquire) => {
      t.locker.__failNextHandOver()
      await expect(acquire(t.locker)).rejects.toThrow(/hand-over failed/)
      expect(t.locker.stats().held).toBe(0)
      expect(await eventually(async () => (await t.ctx.collection.countDocuments()) === 0, 5000)).toBe(true)
      // And the key is free for the next caller at once.
      const again = await acquire(t.locker)
      expect(again).not.toBeNull()
      for (const lock of [again].flat()) await lock.free()
    })

    it('a manager closed between the insert and the hand-over: the call rejects as closed, and nothing remains', async () => {
      const pending = t.locker.lock('k').then((lock) => ({ lock }), (err) => ({ err }))
      await t.locker.close()
      const outcome = await pending
      // Either the lock came first (close() then freed it) or close() did.
      if (outcome.lock) expect(outcome.lock.locked).toBe(false)
      else expect(outcome.err.closed).toBe(true)
      expect(await t.ctx.collection.countDocuments()).toBe(0)
    })
  })
})
}
