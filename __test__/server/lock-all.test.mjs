// Several keys at once (lockAll: sorted, all or nothing) and withLock.
import { describe, it, expect } from 'vitest'
import { lib, useLocker, sleep } from '../support/suite.mjs'

describe('lockAll(keys, options)', () => {
  const t = useLocker('lock-all')

  it('takes every key and returns the locks in the order given', async () => {
    const locks = await t.locker.lockAll(['account-b', 'account-a', 'account-c'])
    expect(locks.map((l) => l.action)).toEqual(['account-b', 'account-a', 'account-c'])
    expect(await t.ctx.collection.countDocuments()).toBe(3)
    await Promise.all(locks.map((l) => l.free()))
  })

  it('is all or nothing: frees what it took and resolves null when one key is held', async () => {
    const held = await t.locker.lock('account-b')
    expect(await t.locker.lockAll(['account-c', 'account-a', 'account-b'])).toBeNull()
    expect((await t.ctx.collection.find().toArray()).map((d) => d.action)).toEqual(['account-b'])
    await held.free()
  })

  it('two transfers locking the same accounts in opposite orders never deadlock', async () => {
    const transfer = async (from, to) => {
      for (let i = 0; i < 10; i++) {
        const locks = await t.locker.lockAll([from, to], { waitMs: 10_000 })
        expect(locks).not.toBeNull()
        await sleep(2)
        await Promise.all(locks.map((l) => l.free()))
      }
    }
    await Promise.all([transfer('acct-1', 'acct-2'), transfer('acct-2', 'acct-1')])
    expect(await t.ctx.collection.countDocuments()).toBe(0)
  })

  it('refuses repeated keys, an empty list and bad keys, writing nothing', async () => {
    await expect(t.locker.lockAll(['a', 'a'])).rejects.toThrow(/got the key "a" twice/)
    await expect(t.locker.lockAll([])).rejects.toThrow(/needs a non-empty array of keys, got \[\]/)
    await expect(t.locker.lockAll('a')).rejects.toThrow(TypeError)
    await expect(t.locker.lockAll(['a', undefined])).rejects.toThrow(/invalid lock key undefined/)
    expect(await t.ctx.collection.countDocuments()).toBe(0)
  })
})

describe('withLock(key, fn, options)', () => {
  const t = useLocker('with-lock')

  it('runs fn while holding the lock, passes the lock and its signal, frees it after, returns fn\'s result', async () => {
    const result = await t.locker.withLock('job', async (lock, signal) => {
      expect(lock.locked).toBe(true)
      expect(signal).toBe(lock.signal)
      expect(await t.ctx.collection.countDocuments({ action: 'job' })).toBe(1)
      return 42
    })
    expect(result).toBe(42)
    expect(await t.ctx.collection.countDocuments()).toBe(0)
  })

  it('keeps fn\'s error and still frees the lock', async () => {
    const boom = new Error('payment failed')
    await expect(t.locker.withLock('job', () => { throw boom })).rejects.toBe(boom)
    expect(await t.ctx.collection.countDocuments()).toBe(0)
  })

  it('keeps fn\'s error even when freeing fails too', async () => {
    const boom = new Error('payment failed')
    let lockSeen
    const err = await t.locker.withLock('job', async (lock) => {
      lockSeen = lock
      // Make this lock's release fail, as it would with the server gone.
      lock.free = () => Promise.reject(new Error('free failed'))
      throw boom
    }).catch((e) => e)
    expect(err).toBe(boom)
    expect(lockSeen.locked).toBe(true) // not freed: it will expire after its ttl
  })

  it('rejects like requireLock when the lock cannot be had, without running fn', async () => {
    const held = await t.locker.lock('busy')
    let ran = false
    await expect(t.locker.withLock('busy', () => { ran = true }, { waitMs: 100 })).rejects.toThrow('Failed to acquire lock for busy')
    expect(ran).toBe(false)
    await held.free()
  })

  it('needs a function', async () => {
    await expect(t.locker.withLock('job', 'not a function')).rejects.toThrow(/withLock\(key, fn\) needs a function, got string/)
  })
})
