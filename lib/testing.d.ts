/* mongo-locks-native/testing: a locker for tests, held in memory, with the
 * rules of the real LockManager. No MongoDB and no native addon needed. */
import type { Collection } from 'mongodb'
import type { LockKey, LockManager, LockModel } from '../index.js'
export { MongoLocksError, LockLostError, OnceInProgressError, OnceMismatchError, OnceFailedError } from '../index.js'

/** Options of `createTestLocker(options)`. Unknown names are refused. */
export interface TestLockerOptions {
  /** How long a lock lives after its last refresh, in ms (default 60000, as the real manager). */
  ttlMs?: number
  /** How often held locks count as refreshed, in ms (default 10000, or ttlMs / 6 when ttlMs is set); below ttlMs. */
  refreshMs?: number
  /** `holder.app` of the locks (default `'test'`): a non-empty string (`''` is refused, as by the real manager). */
  appName?: string
  /** What `locker.collection` and `lock.collection` read back; nothing is stored in it. */
  collection?: Collection<LockModel>
}

/** One entry of `locker.history`. */
export interface TestLockerEvent {
  /**
   * `acquired`: a lock was handed out. `freed`: `free()` (or `close()`) released a held lock.
   * `lost`: a held lock was lost (`takeOver(key)`). `expired`: a lock passed its expiry (its
   * holder, if still holding, lost it), from `expire(key)`, `expireOnce(key)`, `maxHoldMs`,
   * `locked = false` or the end of a `minHoldMs`. `refused`: a call resolved `null` because the
   * key was held, or `once()` met a run in progress (`OnceInProgressError`). A `once()` run
   * appears as the lock on its record: `acquired` when it starts, `freed` when it ends.
   */
  type: 'acquired' | 'freed' | 'lost' | 'expired' | 'refused'
  /**
   * The key as given to `lock()`; for semaphore permits and read/write sides, the stored key
   * (`{ _semaphore: key, permit: i }`, `{ _rwlock: key, reader: i }`, `{ _rwlock: key, writer: true }`);
   * for a `once(key)` run, `{ _once: key }`.
   */
  key: unknown
  /** When, on the locker's clock (`locker.now()`, ms since the epoch). */
  at: number
}

/**
 * A `LockManager` held in memory: assignable wherever a `LockManager` (or the
 * helpers' `{ lock }`) is expected, plus what a test needs to drive and check it.
 * Its locks have the real locks' surface; `_id` needs the `mongodb` package,
 * and `collection` is the `collection` option (undefined without one).
 */
export interface TestLocker extends LockManager {
  /** Every acquisition, free, loss, expiry and refusal, in order. */
  readonly history: TestLockerEvent[]
  /** The keys of the locks held now, oldest first (`held` is their number, as on the real manager). */
  readonly heldKeys: unknown[]
  /** The locker's clock: `Date.now()` (which fake timers control) plus what `advance()` added. */
  now(): number
  /**
   * Moves the locker's clock `ms` forward and does at once what falls due: expiries (lost
   * signals, `onLost`), waits that run out, `minHoldMs` ending. Resolves once the promises
   * this settled have run their callbacks.
   */
  advance(ms: number): Promise<void>
  /** The holder of `key` died: its lock expires now (its signal aborts) and the next `lock()` takes it over. Throws if nobody holds `key`. */
  expire(key: LockKey): void
  /**
   * The record of `once(key)` expires now. A run in progress: its holder died (its `signal`
   * aborts with a `LockLostError`), the next `once(key)` takes the record over and runs again
   * with a higher fencing token, and the old run's end rejects with `LockLostError`. A finished
   * record: its `ttlMs` has passed, the next call runs again. Throws if the key has no live record.
   */
  expireOnce(key: LockKey): void
  /** The lock on `key` is lost while held (as when another process took it over): its signal aborts, `onLost` is called, the key is free. Throws if nobody holds `key`. */
  takeOver(key: LockKey): void
  /** Throws an `Error` naming the locks still held: `afterEach(() => locker.assertNoneHeld())` catches a missing `free()`. */
  assertNoneHeld(): void
}

/** A locker with the real `LockManager`'s rules, held in memory, for tests. */
export declare function createTestLocker(options?: TestLockerOptions): TestLocker
