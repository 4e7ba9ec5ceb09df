// Types of `mongo-locks-native/hapi` (hand-written; hapi.js is the plugin).
import type { NamedPlugin, Request } from '@hapi/hapi'
import type { Election, ElectionOptions, LockKey, LockManager, LockManagerOptions, MongoCollectionLike, ScheduleOptions, ScheduledJob } from '../index.js'

/** The LockManager options the plugin passes through (it supplies `logger` itself). */
export type MongoLocksPluginLockerOptions = Pick<LockManagerOptions, 'ttlMs' | 'refreshMs' | 'serverSelectionTimeoutMs' | 'operationTimeoutMs' | 'writeConcern'> & {
  /** Serve `locker.metrics()` (Prometheus text) at this path, e.g. `'/metrics'`. */
  metricsPath?: string
  /**
   * Jobs started with the server on every instance and run by one of them per
   * interval (`locker.schedule()`), stopped before the server stops; `server.jobs` has them by name.
   */
  jobs?: Record<string, ScheduleOptions & { run: (signal: AbortSignal) => unknown }>
  /** An election campaigning from server start to server stop (`locker.elect()`), as `server.election`. */
  election?: ElectionOptions & { key: LockKey }
}

/** The plugin connects on its own: `LockManager.connect(mongoUrl, …)`. */
export interface MongoLocksPluginUrlOptions extends MongoLocksPluginLockerOptions {
  /** MongoDB connection string. */
  mongoUrl: string
  /** The database holding the lock collection. */
  databaseName: string
  /** The lock collection's name (default `'mongo-locks'`). */
  collection?: string
}

/** The plugin reuses a collection from the backend's own MongoDB client (its URL; the locker keeps its own pool). */
export interface MongoLocksPluginCollectionOptions extends MongoLocksPluginLockerOptions {
  /** A Node `mongodb` driver Collection (driver 4 to 7), from `db.collection(name)`. */
  collection: MongoCollectionLike
  mongoUrl?: never
  databaseName?: never
}

export type MongoLocksPluginOptions = MongoLocksPluginUrlOptions | MongoLocksPluginCollectionOptions

/** What the plugin adds to the server (also declared on `Server` and `Request` below). */
export interface MongoLocksDecorations {
  locker: LockManager
  jobs: Record<string, ScheduledJob>
  election: Election | null
}

/**
 * `await server.register({ plugin, options })`: decorates `server.locker` and
 * `request.locker` with one LockManager, logs through `server.logger`
 * (hapi-pino) or `server.log`, and closes the locker when the server stops.
 */
export declare const plugin: NamedPlugin<MongoLocksPluginOptions, MongoLocksDecorations> & {
  name: 'mongo-locks-native'
  version: string
}

/**
 * `options.plugins.locks.idempotency` of a route: its handler runs inside
 * `server.locker.once()`, keyed by the request's `Idempotency-Key` header; a
 * retry with the same key and the same method, path, query and body gets the
 * first response again (marked `Idempotent-Replayed: true`), one with a
 * different request 422, one while the first still runs 409. 5xx responses,
 * 408/409/425/429, streamed bodies and responses over `maxResponseBytes` are
 * not kept: the next retry runs the handler again.
 */
export interface IdempotencyRouteOptions {
  /** Answer 400 to a request without a key (default `true`); `false`: such a request just runs. */
  required?: boolean
  /** Where the key comes from (default: the `Idempotency-Key` header); `undefined` when the request has none. */
  key?: (request: Request) => string | undefined | Promise<string | undefined>
  /** How long a response is kept for retries, in ms (default a day, as `once()`). */
  ttlMs?: number
  /** How long a retry waits for the first request to finish before its 409, in ms (default: no wait). */
  waitMs?: number
  /** The largest response kept, as stored (default 1 MiB, at most 15 MiB). */
  maxResponseBytes?: number
}

/** What a route's handler finds in `request.plugins.locks` while it runs idempotently. */
export interface IdempotencyRun {
  /** The request's idempotency key. */
  key: string
  /** Aborts if this run's record is lost (the process was paused or cut off past the locker's ttlMs). */
  signal: AbortSignal
  /** Higher for each run of the key: pass it to writes that must refuse a run that lost its record. */
  fencingToken: bigint
}

/**
 * The idempotent routes on their own, over a `server.locker` made another
 * way (a LockManager decorated by hand, or `createTestLocker()` in tests).
 * The main plugin registers it already.
 */
export declare const idempotency: NamedPlugin<void> & {
  name: 'mongo-locks-native/idempotency'
  version: string
  once: true
}

declare module '@hapi/hapi' {
  interface PluginSpecificConfiguration {
    /** Route options of mongo-locks-native. */
    locks?: {
      /** Run the handler at most once per idempotency key: `true` for the defaults, or the options. */
      idempotency?: boolean | IdempotencyRouteOptions
    }
  }
  interface PluginsStates {
    /** Set by mongo-locks-native while an idempotent route's handler runs. */
    locks?: { idempotency: IdempotencyRun }
  }
  interface Server {
    /** The lock manager of `mongo-locks-native/hapi`. */
    locker: LockManager
    /** The plugin's `jobs`, by name. */
    jobs: Record<string, ScheduledJob>
    /** The plugin's `election`, or `null` without that option. */
    election: Election | null
  }
  interface Request {
    /** The same lock manager as `server.locker`. */
    locker: LockManager
  }
}
