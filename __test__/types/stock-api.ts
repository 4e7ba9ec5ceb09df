// A backend's lock code, written against mongo-locks 3.2.0's declarations and
// nothing else (its tests, with vitest mocks, are in stock-api-mocks.ts).
// __test__/unit/drop-in-typecheck.test.mjs type-checks it (strict) with `mongo-locks`
// resolving to stock mongo-locks 3.2.0 and to this package installed under
// that name (as `npm install mongo-locks@npm:mongo-locks-native` does), with
// nodenext (ESM and CommonJS) and node10 resolution: every compile must give
// zero errors. Never run. Only mongo-locks 3.2.0's API may appear here:
// anything of ours would fail the stock compile.
import { MongoClient, ObjectId, type Collection, type Db } from 'mongodb'
import { LockManager, MongoLocksError, type Lock, type LockModel } from 'mongo-locks'
import * as mongoLocks from 'mongo-locks'

/** `true` only when A and B are the same type (`any` matches only `any`). */
type Exactly<A, B> = (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true : false
function expectType<T extends true>(): void {}

// --- Wiring, as the mongo-locks README and Hapi backends using it do it ---

const client = new MongoClient('mongodb://localhost:27017')
export const locker = new LockManager(client.db('app').collection('mongo-locks'))

export function lockerFor(db: Db): LockManager {
  return new mongoLocks.LockManager(db.collection('mongo-locks'))
}

export interface Server {
  locker: LockManager
  db: Db
}

// --- Keys: stock takes any key (`lock(key: unknown)`) -----------------------

interface PaymentKey {
  kind: 'payment'
  paymentId: string
}

export async function lockAnything(server: Server, fromRequest: unknown, maybeId: string | undefined, payment: PaymentKey, n: number) {
  const fromUnknown = await server.locker.lock(fromRequest)
  const fromOptional = await server.locker.lock(maybeId)
  const fromInterface = await server.locker.lock(payment)
  const fromArray = await server.locker.lock(['account', n])
  const fromTemplate = await server.locker.lock(`bank-details-${n}`)
  const fromNumber = await server.locker.lock(n)
  const locks: (Lock | null)[] = [fromUnknown, fromOptional, fromInterface, fromArray, fromTemplate, fromNumber]
  await Promise.all(locks.map((lock) => lock?.free()))
}

// --- The EPR LAPS Backend locking guide's pattern, and the lock's fields ---

export async function updateBankDetails(server: Server, organisationId: string, newDetails: object) {
  const lock = await server.locker.lock(`bank-details-${organisationId}`)
  if (!lock) {
    return { status: 'locked', retry: true }
  }
  try {
    await server.db.collection('bank_details').updateOne({ organisationId }, { $set: newDetails })
    return { success: true }
  } finally {
    await lock.free()
  }
}

export async function inspect(server: Server) {
  const lock = await server.locker.lock('report')
  if (!lock) return null
  const id: ObjectId = lock._id
  const action: unknown = lock.action
  const collection: Collection<LockModel> = lock.collection
  const stored: LockModel | null = await lock.collection.findOne({ _id: lock._id })
  const same: boolean = stored !== null && stored._id.equals(lock._id)
  const expiresAt: Date | undefined = stored?.expiresAt
  const hex: string = lock._id.toHexString()
  const held: boolean = lock.locked
  const refreshed: boolean = await lock.refresh()
  // Stop refreshing this lock and let it expire (a crash simulation).
  lock.locked = false
  const freed: boolean = await lock.free()
  const all: number = await server.locker.collection.countDocuments({})
  await locker.collection.deleteMany({ action: 'report' })
  return { id, action, collection, same, expiresAt, hex, held, refreshed, freed, all }
}

// A helper typed with the stock Lock gets locks from lock().
async function critical(lock: Lock): Promise<void> {
  if (!lock.locked) throw new Error(`lost ${String(lock.action)}`)
  await lock.refresh()
}

export async function useHelper(server: Server) {
  let current: Lock | null = null
  current = await server.locker.lock('helper')
  if (current) await critical(current)
  await current?.[Symbol.asyncDispose]()
}

// --- `await using` and `using` ----------------------------------------------

export async function doStuff(server: Server) {
  await using lock = await server.locker.lock('unique string key')
  if (!lock) {
    console.log('Lock already taken')
    return
  }
  {
    using quick = await server.locker.lock('quick')
    void quick
  }
}

// --- Errors ---------------------------------------------------------------

export class LockTimeoutError extends MongoLocksError {
  override name = 'LockTimeoutError'
  constructor(readonly key: string) {
    super(`timed out waiting for ${key}`)
  }
}

export async function errors(server: Server) {
  const bare = new MongoLocksError()
  const withMessage = new MongoLocksError('boom')
  const fromLocker = new server.locker.MongoLocksError('from the locker')
  const ErrorClass: typeof MongoLocksError = server.locker.MongoLocksError
  try {
    await server.locker.lock('k')
  } catch (err) {
    if (err instanceof server.locker.MongoLocksError || err instanceof MongoLocksError) {
      const message: string = err.message
      void message
    }
  }
  const asError: Error = bare
  return [bare, withMessage, fromLocker, ErrorClass, asError, new LockTimeoutError('k')]
}

// --- The stored document ------------------------------------------------------

export async function staleLocks(db: Db): Promise<LockModel[]> {
  const locks = db.collection<LockModel>('mongo-locks')
  const stale = await locks.find({ expiresAt: { $lt: new Date() } }).toArray()
  const model: LockModel = { _id: new ObjectId(), action: 'x', createdAt: new Date(), refreshedAt: new Date(), expiresAt: new Date() }
  await locks.insertOne(model)
  return stale
}

// --- Subclassing ---------------------------------------------------------

export class PrefixedLockManager extends LockManager {
  constructor(collection: Collection, private readonly prefix: string) {
    super(collection)
  }

  override async lock(key: unknown) {
    return super.lock(`${this.prefix}:${String(key)}`)
  }

  async clear(): Promise<number> {
    const { deletedCount } = await this.collection.deleteMany({})
    return deletedCount
  }
}

export async function subclass(db: Db) {
  const prefixed = new PrefixedLockManager(db.collection('mongo-locks'), 'tenant-1')
  const asBase: LockManager = prefixed
  const lock = await prefixed.lock('job')
  await lock?.free()
  return asBase instanceof LockManager
}

// --- Method types ----------------------------------------------------------

export type LockFn = LockManager['lock']
export type LockKeyParam = Parameters<LockManager['lock']>[0]
export type LockResult = Awaited<ReturnType<LockManager['lock']>>
export type FreeResult = Awaited<ReturnType<Lock['free']>>

export function methodTypes(lockFn: LockFn, key: LockKeyParam) {
  expectType<Exactly<Parameters<LockManager['lock']>, [key: unknown]>>()
  expectType<Exactly<LockResult, Lock | null>>()
  expectType<Exactly<FreeResult, boolean>>()
  expectType<Exactly<Awaited<ReturnType<Lock['refresh']>>, boolean>>()
  expectType<Exactly<Lock['_id'], ObjectId>>()
  expectType<Exactly<Lock['action'], unknown>>()
  expectType<Exactly<Lock['collection'], Collection<LockModel>>>()
  expectType<Exactly<Lock['locked'], boolean>>()
  expectType<Exactly<LockManager['collection'], Collection<LockModel>>>()
  expectType<Exactly<LockManager['MongoLocksError'], typeof MongoLocksError>>()
  const anyKey: LockKeyParam = undefined
  const pending: ReturnType<LockFn> = lockFn(key ?? anyKey)
  return pending
}

// --- A test double: the stock Lock as a plain object --------------------

export function fakeLock(overrides: Partial<Lock> = {}): Lock {
  const fake: Lock = {
    _id: new ObjectId(),
    action: 'fake',
    collection: client.db('app').collection<LockModel>('mongo-locks'),
    locked: true,
    free: async () => true,
    refresh: async () => true,
    [Symbol.dispose]: () => {},
    [Symbol.asyncDispose]: async () => true,
    ...overrides,
  }
  return fake
}
