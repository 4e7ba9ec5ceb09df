// Types of `mongo-locks-native/hapi` (hand-written; hapi.js is the plugin).
import type { NamedPlugin } from '@hapi/hapi'
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

declare module '@hapi/hapi' {
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
