// Misuses the declarations must reject. __test__/unit/declarations.test.mjs compiles this
// file and requires, for each line marked `// expect TSxxxx`, exactly that
// error on that line, and no error anywhere else: a declaration loosened to
// `any` (or an optional that should not be) makes a marked line compile.
import { server as hapiServer } from '@hapi/hapi'
import type { Request } from '@hapi/hapi'
import { MongoClient } from 'mongodb'
import { LockManager, acquireLock, requireLock, type Lock } from 'mongo-locks-native'
import { plugin } from 'mongo-locks-native/hapi'

type Exactly<A, B> = (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true : false
function expectType<T extends true>(): void {}

export async function misuse(locker: LockManager, request: Request) {
  const lock = await locker.lock('resource')
  lock.free() // expect TS18047
  if (!lock) return
  await lock.free(123) // expect TS2554
  lock.id = 'x' // expect TS2540
  const n: number = lock.id // expect TS2322
  lock.release() // expect TS2339
  // lock(key: unknown) takes any key, as mongo-locks' does (bad ones reject at run
  // time); the methods mongo-locks does not have keep LockKey.
  await locker.withLock(undefined, () => 1) // expect TS2345
  await locker.lockAll([null]) // expect TS2322
  await locker.lock('k', { wait: 5 }) // expect TS2353
  // The stock Lock shape: a double needs all of it, and has none of our extras.
  const fake: Lock = { free: async () => true } // expect TS2740
  fake.signal // expect TS2339
  new LockManager(new MongoClient('mongodb://h').db('d').collection('c'), { logger: true }) // expect TS2322
  new LockManager({ collectionName: 'c' }) // expect TS2345
  new LockManager(new MongoClient('mongodb://h').db('d').collection('c'), { ttl: 5 }) // expect TS2353
  new LockManager(new MongoClient('mongodb://h').db('d').collection('c'), { logger: 'debug' }) // expect TS2322
  await LockManager.connect('mongodb://h', { collection: 'c' }) // expect TS2345
  const maybe = await acquireLock(locker, 'r')
  maybe.free() // expect TS18047
  await requireLock(locker) // expect TS2554
  const s: string = request.locker // expect TS2322
  expectType<Exactly<typeof request.locker, any>>() // expect TS2344
  return n
}

// Missing or conflicting options only: hapi's register() also infers the
// options type from `options`, so an extra unknown key is not caught by tsc
// (the plugin refuses it at registration).
export async function pluginMisuse(collection: ReturnType<ReturnType<MongoClient['db']>['collection']>) {
  const server = hapiServer()
  await server.register({ plugin, options: { mongoUrl: 'mongodb://h' } }) // expect TS2769
  await server.register({ plugin, options: { mongoUrl: 'mongodb://h', databaseName: 'd', collection } }) // expect TS2769
  await server.register({ plugin, options: { collection, databaseName: 'd' } }) // expect TS2769
}

// once() needs a function, and takes only its own options.
export async function onceMisuse(locker: LockManager) {
  await locker.once('k', 'not a function') // expect TS2345
  await locker.once('k', () => 1, { fencing: true }) // expect TS2353
  await locker.once('k', () => 1, { ttlMs: '1h' }) // expect TS2322
}

// An idempotent route's options are checked.
export function idempotencyMisuse() {
  const server = hapiServer()
  server.route({ method: 'POST', path: '/p', options: { plugins: { locks: { idempotency: { required: 'yes' } } } }, handler: () => 1 }) // expect TS2322
}

// Shared locks take no fencing token; a semaphore needs its limit.
export async function primitivesMisuse(locker: LockManager) {
  await locker.semaphore('k', { limit: 2 }).acquire({ fencing: true }) // expect TS2353
  locker.semaphore('k', {}) // expect TS2345
  await locker.readWriteLock('k').read({ fencing: true }) // expect TS2353
  locker.elect('k', { onDemoted: (reason: 'fired') => reason }) // expect TS2322
}
