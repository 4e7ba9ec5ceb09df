// The tests of the backend in stock-api.ts, as a team writes them with vitest
// against mongo-locks 3.2.0: mocks typed from the LockManager's own method,
// spies on the prototype and on an instance, test doubles typed `Lock`.
// Compiled by __test__/unit/drop-in-typecheck.test.mjs with stock-api.ts, against
// stock and against this package: zero errors for both. Never run.
import { ObjectId } from 'mongodb'
import { LockManager, type Lock } from 'mongo-locks'
import { vi, expect, expectTypeOf } from 'vitest'
import { fakeLock, updateBankDetails, type Server } from './stock-api.js'

export function doubles() {
  const spied: Lock = fakeLock({
    free: vi.fn(async () => true),
    refresh: vi.fn(async () => true),
    [Symbol.dispose]: vi.fn(),
    [Symbol.asyncDispose]: vi.fn(async () => true),
  })
  expectTypeOf(spied._id).toEqualTypeOf<ObjectId>()
  expectTypeOf<Awaited<ReturnType<LockManager['lock']>>>().toEqualTypeOf<Lock | null>()
  expectTypeOf<Parameters<LockManager['lock']>>().toEqualTypeOf<[key: unknown]>()
  return spied
}

export async function mocks(server: Server) {
  const lock = vi.fn<LockManager['lock']>()
  lock.mockResolvedValue(fakeLock())
  lock.mockResolvedValueOnce(null)
  lock.mockImplementation(async (key) => (key === 'busy' ? null : fakeLock({ action: key })))
  const mockedLocker = { lock } as unknown as LockManager
  await updateBankDetails({ locker: mockedLocker, db: server.db }, 'org-1', {})
  expect(lock).toHaveBeenCalledWith('bank-details-org-1')

  const onPrototype = vi.spyOn(LockManager.prototype, 'lock').mockResolvedValue(null)
  const onInstance = vi.spyOn(server.locker, 'lock').mockResolvedValueOnce(fakeLock({ locked: false }))
  onInstance.mockImplementation(async () => fakeLock())
  await server.locker.lock('spied')
  expect(onInstance).toHaveBeenCalledTimes(1)
  const firstKey: unknown = onInstance.mock.calls[0]?.[0]
  const settled = await onInstance.mock.results[0]?.value
  const settledLock: Lock | null | undefined = settled
  onPrototype.mockRestore()

  const mockFree = vi.fn<Lock['free']>().mockResolvedValue(true)
  const withMockedFree: Lock = fakeLock({ free: mockFree })
  await withMockedFree.free()
  expect(mockFree).toHaveBeenCalledOnce()
  return { firstKey, settledLock }
}
