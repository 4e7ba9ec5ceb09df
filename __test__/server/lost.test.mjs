// Knowing you lost it: lock.signal aborts with a LockLostError (and onLost
// is called, and locked turns false) when a refresh finds the document gone
// or when the expiry passes without a successful refresh; maxHoldMs lets a
// stuck holder's lock expire.
import { describe, it, expect, vi } from 'vitest'
import { lib, useLocker, eventually, sleep } from '../support/suite.mjs'

const { LockManager, LockLostError } = lib

describe('lost-lock signal', () => {
  const t = useLocker('lost', { ttlMs: 3000, refreshMs: 200 })

  it('aborts lock.signal with a LockLostError, calls onLost, turns locked false, when the document is deleted', async () => {
    const onLost = vi.fn()
    const lock = await t.locker.lock('watched', { onLost })
    const { signal } = lock
    expect(signal).toBeInstanceOf(AbortSignal)
    expect(lock.signal).toBe(signal) // one signal per lock
    expect(signal.aborted).toBe(false)
    await t.ctx.collection.deleteOne({ action: 'watched' })
    await eventually(() => signal.aborted, 5000)
    expect(signal.reason).toBeInstanceOf(LockLostError)
    expect(signal.reason.message).toMatch(/lost the lock on "watched": its document is gone/)
    expect(lock.locked).toBe(false)
    await eventually(() => onLost.mock.calls.length > 0, 2000)
    expect(onLost).toHaveBeenCalledTimes(1)
    expect(onLost.mock.calls[0][0]).toBe(signal.reason)
    expect(t.locker.stats().lost).toBe(1)
  })

  it('a lost lock\'s free() resolves false and never deletes the new holder\'s lock', async () => {
    const lock = await t.locker.lock('taken')
    await t.ctx.collection.deleteOne({ action: 'taken' }) // as if it expired and was taken over…
    const other = new LockManager(t.ctx.collection)
    try {
      const theirs = await other.lock('taken') // …by another process
      expect(theirs).not.toBeNull()
      await eventually(() => !lock.locked, 5000)
      expect(await lock.free()).toBe(false)
      expect(await t.ctx.collection.countDocuments({ action: 'taken' })).toBe(1)
      expect(theirs.locked).toBe(true)
    } finally {
      await other.close()
    }
  })

  it('refresh() finding the document gone aborts the signal too', async () => {
    const lock = await t.locker.lock('refresh-gone')
    const { signal } = lock
    await t.ctx.collection.deleteMany({})
    expect(await lock.refresh()).toBe(false)
    await eventually(() => signal.aborted, 2000)
    expect(signal.reason).toBeInstanceOf(LockLostError)
  })

  it('a lock freed normally gets a signal that never aborts, and onLost is not called', async () => {
    const onLost = vi.fn()
    const lock = await t.locker.lock('fine', { onLost })
    const { signal } = lock
    await lock.free()
    await sleep(600)
    expect(signal.aborted).toBe(false)
    expect(onLost).not.toHaveBeenCalled()
    expect(lock.signal.aborted).toBe(false)
  })

  it('close() releases locks without signalling them lost', async () => {
    const m = new LockManager(t.ctx.collection, { ttlMs: 3000, refreshMs: 200 })
    const lock = await m.lock('closing')
    const { signal } = lock
    await m.close()
    await sleep(300)
    expect(signal.aborted).toBe(false)
    expect(lock.locked).toBe(false)
  })

  it('refresh() never moves the server\'s expiry back ($max): a later expiry already written stays', async () => {
    const lock = await t.locker.lock('monotone')
    // As if a refresh sent later (a later expiry) had landed first.
    const far = new Date(Date.now() + 3_600_000)
    await t.ctx.collection.updateOne({ action: 'monotone' }, { $set: { expiresAt: far } })
    expect(await lock.refresh()).toBe(true)
    const doc = await t.ctx.collection.findOne({ action: 'monotone' })
    expect(doc.expiresAt.getTime()).toBe(far.getTime())
  })

  it('onLost is called once for a lock lost before lock() resolved (the loss came first)', async () => {
    const onLost = vi.fn()
    // Connected first, so that the insert goes out at once: the ttl below
    // counts from it, not from connecting on a loaded machine.
    await t.locker.ready
    // maxHoldMs: no refresh at all, so the lock runs out one ttl after it
    // was taken, while this thread is kept busy and cannot settle lock().
    const pending = t.locker.lock('late-settle', { onLost, maxHoldMs: 1 })
    const until = Date.now() + 4000
    while (Date.now() < until) { /* busy: the JS thread is blocked past the ttl */ }
    const lock = await pending
    expect(lock.locked).toBe(false)
    await eventually(() => onLost.mock.calls.length > 0, 2000)
    await sleep(200)
    expect(onLost).toHaveBeenCalledTimes(1)
    expect(onLost.mock.calls[0][0]).toBeInstanceOf(LockLostError)
    expect(lock.signal.aborted).toBe(true)
    expect(await lock.free()).toBe(false)
  })

  it('onLost must be a function', async () => {
    await expect(t.locker.lock('x', { onLost: 'log it' })).rejects.toThrow(/options.onLost must be a function, got "log it"/)
  })
})

describe('maxHoldMs', () => {
  const t = useLocker('max-hold', { ttlMs: 1500, refreshMs: 100 })

  it('stops refreshing after maxHoldMs: the lock expires one ttl later, its signal aborts, another can take it', async () => {
    await t.locker.ready // the times below count from the insert, not from connecting
    const started = Date.now()
    const lock = await t.locker.lock('stuck', { maxHoldMs: 300 })
    const { signal } = lock
    let lostWall
    signal.addEventListener('abort', () => { lostWall = Date.now() }, { once: true })
    const other = new LockManager(t.ctx.collection, { ttlMs: 1500 })
    try {
      await eventually(() => signal.aborted, 5000, 10)
      const lostAfter = Date.now() - started
      expect(signal.reason.message).toMatch(/its expiry passed without a successful refresh/)
      expect(lostAfter).toBeGreaterThanOrEqual(1500) // maxHold 300 + ttl 1500, less the safety margin
      expect(lostAfter).toBeLessThan(3000)
      // The holder gave up before the document expired on the server…
      const doc = await t.ctx.collection.findOne({ action: 'stuck' })
      // (The abort event's own time, not the time after this read: the event
      // comes no sooner than the loss, so this bounds it from above.)
      if (doc) expect(lostWall).toBeLessThan(doc.expiresAt.getTime() + 100)
      // …and once it has, another manager takes it over.
      const theirs = await other.lock('stuck', { waitMs: 3000 })
      expect(theirs).not.toBeNull()
    } finally {
      await other.close()
    }
  })

  it('a lock within its maxHoldMs keeps being refreshed', async () => {
    const lock = await t.locker.lock('patient', { maxHoldMs: 10_000 })
    await sleep(2000) // longer than the ttl
    expect(lock.locked).toBe(true)
    expect(lock.signal.aborted).toBe(false)
  })
})
