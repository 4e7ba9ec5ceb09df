// The package used the way Hapi backends (such as Defra's EPR LAPS Backend,
// made from the Defra CDP Node.js backend template) use mongo-locks, type-checked
// (never run) by __test__/unit/declarations.test.mjs. `expectType<Exactly<…>>()` pins a
// type exactly, so a declaration loosened to `any` fails here too.
import { server as hapiServer } from '@hapi/hapi'
import type { Request, ResponseToolkit } from '@hapi/hapi'
import { MongoClient, ObjectId, type Collection } from 'mongodb'
import {
  LockManager,
  MongoLocksError,
  acquireLock,
  requireLock,
  Lock,
  type NativeLock,
  type LockModel,
  type LockStats,
  type LockManagerOptions,
  type ConnectOptions,
  OnceInProgressError,
  OnceMismatchError,
  OnceFailedError,
  type OnceRecordView,
} from 'mongo-locks-native'
import { plugin as mongoLocksPlugin, idempotency } from 'mongo-locks-native/hapi'
import * as mongoLocksModule from 'mongo-locks-native/hapi'
import type { MongoLocksPluginOptions } from 'mongo-locks-native/hapi'

type Exactly<A, B> = (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true : false
function expectType<T extends true>(): void {}

// What a backend writes in its own typings when it wires the locker by hand;
// it must agree with the augmentation lib/hapi.d.ts ships.
declare module '@hapi/hapi' {
  interface Server {
    locker: LockManager
  }
  interface Request {
    locker: LockManager
  }
}

// hapi-pino's request.logger is a pino Logger; this is pino's LogFn shape.
interface LogFn {
  <T extends object>(obj: T, msg?: string, ...args: unknown[]): void
  (obj: unknown, msg?: string, ...args: unknown[]): void
  (msg: string, ...args: unknown[]): void
}
interface PinoLike {
  debug: LogFn
  info: LogFn
  warn: LogFn
  error: LogFn
}
declare const logger: PinoLike

export async function registration(mongoUrl: string): Promise<void> {
  const server = hapiServer({ port: 0 })

  const urlOptions: MongoLocksPluginOptions = { mongoUrl, databaseName: 'app', ttlMs: 30_000, refreshMs: 5_000 }
  await server.register({ plugin: mongoLocksPlugin, options: urlOptions })

  // A backend keeping its own MongoDB plugin passes its collection instead.
  const client = await MongoClient.connect(mongoUrl)
  const other = hapiServer()
  const registered = await other.register({
    plugin: mongoLocksPlugin,
    options: { collection: client.db('app').collection('mongo-locks'), serverSelectionTimeoutMs: 2_000 },
  })
  expectType<Exactly<typeof registered.locker, LockManager>>()
  // The module as `require('mongo-locks-native/hapi')` gives it.
  await hapiServer().register({ plugin: mongoLocksModule, options: { mongoUrl, databaseName: 'app', collection: 'locks' } })

  expectType<Exactly<typeof mongoLocksPlugin.name, 'mongo-locks-native'>>()
  expectType<Exactly<typeof server.locker, LockManager>>()
}

// The traditional pattern of the EPR LAPS Backend's locking guide, in a route handler.
export async function handler(request: Request, h: ResponseToolkit) {
  const lock = await request.locker.lock(`bank-details-${request.params.organisationId}`)
  expectType<Exactly<typeof lock, NativeLock | null>>()
  if (!lock) {
    return h.response({ status: 'locked', retry: true }).code(409)
  }
  try {
    expectType<Exactly<typeof lock.locked, boolean>>()
    expectType<Exactly<typeof lock.id, string>>()
    expectType<Exactly<typeof lock.action, unknown>>()
    expectType<Exactly<Awaited<ReturnType<Lock['refresh']>>, boolean>>()
    return { success: true }
  } finally {
    const freed: boolean = await lock.free()
    void freed
  }
}

// `await using` and `using` (ES2022 with esnext.disposable).
export async function doStuff(server: { locker: LockManager }) {
  await using lock = await server.locker.lock('unique-resource-name')
  if (!lock) return
  {
    using quick = await server.locker.lock('quick')
    void quick
  }
}

// The acquireLock / requireLock helpers (as backends keep them in
// src/common/helpers/mongo-lock.js), with a pino logger and with a mocked locker.
export async function helpers(request: Request) {
  const maybe = await acquireLock(request.locker, `payment-${request.params.id}`, request.logger)
  expectType<Exactly<typeof maybe, NativeLock | null>>()
  await acquireLock(request.locker, 'no-logger')
  await acquireLock(request.locker, 'null-logger', null)
  const sure = await requireLock(request.locker, ['critical', 1])
  expectType<Exactly<typeof sure, NativeLock>>()
  await sure.free()
  const mockLocker = { lock: async (_resource: string) => ({ free: async () => undefined }) }
  await acquireLock(mockLocker, 'mocked', console)
}
declare module '@hapi/hapi' {
  interface Request {
    logger: PinoLike
  }
}

// The constructor and connect(), their options, errors, stats and ping.
export async function manager(mongoUrl: string) {
  const client = await MongoClient.connect(mongoUrl)
  const options: LockManagerOptions = { ttlMs: 60_000, refreshMs: 10_000, serverSelectionTimeoutMs: 5_000, uri: mongoUrl, logger }
  const locker = new LockManager(client.db('app').collection('mongo-locks'), options)
  new LockManager(client.db('app').collection('other'), { logger: console, writeConcern: 'majority' })
  const connectOptions: ConnectOptions = { database: 'app', collection: 'mongo-locks', ttlMs: 30_000, logger: { warn: (fields: object, message: string) => console.warn(fields, message) } }
  const connected = await LockManager.connect(mongoUrl, connectOptions)
  expectType<Exactly<typeof connected, LockManager>>()

  const stats = locker.stats()
  expectType<Exactly<typeof stats, LockStats>>()
  const counters: number[] = [stats.held, stats.acquired, stats.contended, stats.takenOver, stats.lost, stats.refreshes, stats.refreshCommands, stats.errors]
  const rtt: number = await locker.ping()

  try {
    await locker.lock({ resource: 'doc', id: 7 })
    await locker.lock(42)
  } catch (err) {
    if (err instanceof MongoLocksError) {
      expectType<Exactly<typeof err.code, number | undefined>>()
      // A subclass may set its own name (as with mongo-locks' MongoLocksError).
      expectType<Exactly<typeof err.name, string>>()
    }
  }
  const closed: void = await locker.close()
  await connected.close()
  return { counters, rtt, closed }
}

// mongo-locks 3.2's surface on our richer types: lock() takes any key (bad ones
// reject at run time), resolves to a NativeLock, which is a stock-shaped Lock
// with more; the manager's collection, MongoLocksError and ready; logger: false.
export async function dropIn(locker: LockManager, key: unknown, options: LockManagerOptions, collection: Collection) {
  const lock = await locker.lock(key, { waitMs: 100 })
  if (!lock) return
  const asStock: Lock = lock
  expectType<Exactly<typeof lock._id, ObjectId>>()
  expectType<Exactly<typeof lock.collection, Collection<LockModel>>>()
  expectType<Exactly<typeof lock.signal, AbortSignal>>()
  expectType<Exactly<typeof locker.collection, Collection<LockModel>>>()
  expectType<Exactly<typeof locker.MongoLocksError, typeof MongoLocksError>>()
  expectType<Exactly<typeof locker.ready, Promise<string[]>>>()
  // The stock signature is the last overload: what LockManager['lock'] utilities see.
  expectType<Exactly<Parameters<LockManager['lock']>, [key: unknown]>>()
  expectType<Exactly<ReturnType<LockManager['lock']>, Promise<Lock | null>>>()
  lock.locked = false
  const unknownLock: unknown = asStock
  if (unknownLock instanceof Lock) expectType<Exactly<typeof unknownLock, NativeLock>>()
  new LockManager(collection, { ...options, logger: false })
  new MongoLocksError()
  await locker.ready
  return lock.id
}

// Beyond one holder: semaphores, read/write locks, election, run-at-most-once.
export async function primitives(locker: LockManager) {
  const permits = locker.semaphore('exports', { limit: 3 })
  const permit = await permits.acquire({ waitMs: 1000 })
  expectType<Exactly<typeof permit, NativeLock | null>>()
  await permit?.free()
  const rw = locker.readWriteLock('catalogue', { maxReaders: 10 })
  const read = await rw.read({ waitMs: 100, minHoldMs: 50 })
  const write = await rw.write({ fencing: true })
  expectType<Exactly<typeof write, NativeLock | null>>()
  await read?.free()
  await write?.free()
  await locker.lock('nightly', { minHoldMs: 60_000 })
  const election = locker.elect('scheduler', {
    onElected: (signal: AbortSignal) => { signal.addEventListener('abort', () => {}) },
    onDemoted: (reason) => { expectType<Exactly<typeof reason, 'lost' | 'resigned' | 'stopped'>>() },
  })
  const leading: boolean = election.isLeader
  const who = await election.leader()
  const pid: number | undefined = who?.pid
  await election.resign()
  await election.stop()
  const job = locker.schedule('reconcile', { everyMs: 60_000 }, async (signal) => signal.aborted)
  const runs: number = job.runs
  await job.stop()
  const server = hapiServer()
  await server.register({ plugin: mongoLocksPlugin, options: { mongoUrl: 'mongodb://h', databaseName: 'd', jobs: { reconcile: { everyMs: 60_000, run: async () => {} } } } })
  const jobRuns: number = server.jobs.reconcile.runs
  await server.register({ plugin: mongoLocksPlugin, options: { mongoUrl: 'mongodb://h', databaseName: 'd', election: { key: 'scheduler', onElected: (signal) => signal.aborted } } })
  const leads: boolean | undefined = server.election?.isLeader
  return { leading, pid, runs, jobRuns, leads }
}

// Operations safe to retry: once() resolves to fn's own result type.
export async function onceUsage(locker: LockManager, paymentId: string) {
  const receipt = await locker.once(`payment-${paymentId}`, async ({ signal, fencingToken }) => {
    expectType<Exactly<typeof fencingToken, bigint>>()
    signal.throwIfAborted()
    return { id: paymentId, at: new Date() }
  }, { payload: { paymentId }, ttlMs: 3_600_000, waitMs: 1000, maxResultBytes: 4096, rememberErrors: true })
  expectType<Exactly<typeof receipt, { id: string; at: Date }>>()
  const record = await locker.inspectOnce(`payment-${paymentId}`)
  expectType<Exactly<typeof record, OnceRecordView | null>>()
  const state: 'running' | 'completed' | 'failed' | undefined = record?.state
  try {
    await locker.once('k', () => 1)
  } catch (err) {
    if (err instanceof OnceInProgressError) return err.waitMs
    if (err instanceof OnceMismatchError) return err.code
    if (err instanceof OnceFailedError) return err.cause.message
  }
  return state
}

// An idempotent Hapi route: its options are typed, and so is what the handler finds.
export async function idempotentRoute(locker: LockManager) {
  const server = hapiServer()
  server.decorate('server', 'locker', locker)
  await server.register(idempotency)
  server.route({
    method: 'POST',
    path: '/payments',
    options: { plugins: { locks: { idempotency: { required: true, ttlMs: 86_400_000, key: (request) => String(request.headers['x-request-id']) } } } },
    handler: (request: Request) => {
      const run = request.plugins.locks?.idempotency
      expectType<Exactly<typeof run, { key: string; signal: AbortSignal; fencingToken: bigint } | undefined>>()
      return { token: String(run?.fencingToken) }
    },
  })
}
