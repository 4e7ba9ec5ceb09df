// acquireLock / requireLock: the tests Hapi backends using mongo-locks (such
// as Defra's EPR LAPS Backend) have for their src/common/helpers/mongo-lock.js,
// with a mocked locker (the pattern those teams use), then with a real
// LockManager.
import { describe, it, expect, vi } from 'vitest'
import { lib, useLocker } from '../support/suite.mjs'

const { acquireLock, requireLock } = lib

describe('acquireLock with a mocked locker', () => {
  it('returns the lock when the locker gives one', async () => {
    const mockLock = { free: vi.fn().mockResolvedValue(undefined) }
    const locker = { lock: vi.fn().mockResolvedValue(mockLock) }
    const logger = { error: vi.fn() }
    await expect(acquireLock(locker, 'payment-1', logger)).resolves.toBe(mockLock)
    expect(locker.lock).toHaveBeenCalledWith('payment-1')
    expect(logger.error).not.toHaveBeenCalled()
  })

  it('logs and returns null when the lock is unavailable', async () => {
    const locker = { lock: vi.fn().mockResolvedValue(null) }
    const logger = { error: vi.fn() }
    await expect(acquireLock(locker, 'payment-1', logger)).resolves.toBeNull()
    expect(logger.error).toHaveBeenCalledWith('Failed to acquire lock for payment-1')
    expect(logger.error).toHaveBeenCalledTimes(1)
  })

  it('returns null without logging when no logger is given', async () => {
    const locker = { lock: vi.fn().mockResolvedValue(null) }
    await expect(acquireLock(locker, 'payment-1')).resolves.toBeNull()
    await expect(acquireLock(locker, 'payment-1', null)).resolves.toBeNull()
  })

  it('treats any falsy result (a bare vi.fn() gives undefined) as unavailable', async () => {
    const locker = { lock: vi.fn() }
    const logger = { error: vi.fn() }
    await expect(acquireLock(locker, 'r', logger)).resolves.toBeNull()
    expect(logger.error).toHaveBeenCalledWith('Failed to acquire lock for r')
  })

  it('passes through a rejection of locker.lock, and a synchronous throw as a rejection', async () => {
    const boom = new Error('db down')
    await expect(acquireLock({ lock: vi.fn().mockRejectedValue(boom) }, 'r')).rejects.toBe(boom)
    const thrower = { lock: () => { throw boom } }
    const result = acquireLock(thrower, 'r')
    expect(result).toBeInstanceOf(Promise)
    await expect(result).rejects.toBe(boom)
  })

  it('rejects with a TypeError when the locker has no lock method', async () => {
    await expect(acquireLock({}, 'r')).rejects.toThrow(TypeError)
    await expect(acquireLock(undefined, 'r')).rejects.toThrow(/locker must be an object with a lock\(resource\) method, got undefined/)
  })

  it('calls lock with `this` bound to the locker', async () => {
    const locker = { inner: { id: 1 }, lock: vi.fn(function () { return this.inner }) }
    await expect(acquireLock(locker, 'r')).resolves.toEqual({ id: 1 })
  })
})

describe('requireLock with a mocked locker', () => {
  it('returns the lock when available', async () => {
    const mockLock = { free: vi.fn() }
    const locker = { lock: vi.fn().mockResolvedValue(mockLock) }
    await expect(requireLock(locker, 'critical-1')).resolves.toBe(mockLock)
    expect(locker.lock).toHaveBeenCalledWith('critical-1')
  })

  it('throws an Error with the message of the helpers backends keep in src/common/helpers/mongo-lock.js when unavailable', async () => {
    const locker = { lock: vi.fn().mockResolvedValue(null) }
    const err = await requireLock(locker, 'critical-1').catch((e) => e)
    expect(err).toBeInstanceOf(Error)
    expect(err.constructor).toBe(Error)
    expect(err.message).toBe('Failed to acquire lock for critical-1')
  })
})

describe('helpers with a real LockManager', () => {
  const t = useLocker()

  it('acquireLock takes a free key and logs contention', async () => {
    const logger = { error: vi.fn() }
    const lock = await acquireLock(t.locker, 'bank-details-7', logger)
    expect(lock.locked).toBe(true)
    expect(await acquireLock(t.locker, 'bank-details-7', logger)).toBeNull()
    expect(logger.error).toHaveBeenCalledWith('Failed to acquire lock for bank-details-7')
    expect(await lock.free()).toBe(true)
  })

  it('requireLock takes a free key and throws on contention', async () => {
    const lock = await requireLock(t.locker, 'critical-9')
    await expect(requireLock(t.locker, 'critical-9')).rejects.toThrow('Failed to acquire lock for critical-9')
    await lock.free()
    const again = await requireLock(t.locker, 'critical-9')
    expect(again.locked).toBe(true)
  })

  it('passes a bad key through to the locker, whose TypeError rejects', async () => {
    await expect(requireLock(t.locker, undefined)).rejects.toThrow(TypeError)
    expect(await t.ctx.collection.countDocuments()).toBe(0)
  })
})
