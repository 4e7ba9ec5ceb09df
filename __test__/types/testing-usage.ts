// The test locker as a TypeScript test uses it, type-checked (never run) by
// __test__/unit/declarations.test.mjs: it goes wherever a LockManager or the helpers'
// `{ lock }` is expected, and its own additions are typed.
import { LockManager, LockLostError, acquireLock, requireLock, type Locker, type NativeLock } from 'mongo-locks-native'
import { createTestLocker, type TestLocker, type TestLockerEvent, LockLostError as TestingLockLostError } from 'mongo-locks-native/testing'

type Exactly<A, B> = (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true : false
function expectType<T extends true>(): void {}

// Code under test, written against the real manager and the helpers.
async function updateBankDetails(server: { locker: LockManager }, organisationId: string): Promise<string> {
  const lock = await server.locker.lock(`bank-details-${organisationId}`)
  if (!lock) return 'locked'
  try {
    return 'updated'
  } finally {
    await lock.free()
  }
}
async function viaHelpers(locker: Locker): Promise<void> {
  const maybe = await acquireLock(locker, 'payment-1', console)
  await maybe?.free()
  const sure = await requireLock(locker, 'payment-2')
  await sure.free()
}

export async function testingUsage(): Promise<void> {
  const locker = createTestLocker({ ttlMs: 30_000, refreshMs: 5_000, appName: 'tests' })
  expectType<Exactly<typeof locker, TestLocker>>()

  // Assignable to a LockManager-typed variable and to the helpers' `{ lock }` shape.
  const asManager: LockManager = locker
  const asLocker: Locker = locker
  const server: { locker: LockManager } = { locker }
  await updateBankDetails(server, '42')
  await viaHelpers(asLocker)
  await asManager.close()

  // Its locks are the real locks' type.
  const lock = await locker.lock('k', { waitMs: 1000, fencing: true, onLost: (err: LockLostError) => err.message })
  expectType<Exactly<typeof lock, NativeLock | null>>()
  if (lock) {
    await using held = lock
    expectType<Exactly<typeof held.fencingToken, bigint | null>>()
  }

  // What a test drives and checks.
  await locker.advance(60_000)
  locker.expire('k')
  locker.takeOver(['k', 1])
  locker.expireOnce('payment-7')
  locker.assertNoneHeld()
  const events: TestLockerEvent[] = locker.history
  expectType<Exactly<(typeof events)[number]['type'], 'acquired' | 'freed' | 'lost' | 'expired' | 'refused'>>()
  expectType<Exactly<typeof locker.heldKeys, unknown[]>>()
  expectType<Exactly<typeof locker.held, number>>()
  expectType<Exactly<ReturnType<typeof locker.now>, number>>()
  // The same error classes as the main entry.
  expectType<Exactly<typeof TestingLockLostError, typeof LockLostError>>()
}

// @ts-expect-error an unknown option is refused
createTestLocker({ ttl: 5 })
