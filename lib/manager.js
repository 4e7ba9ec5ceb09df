'use strict'
// The LockManager class and the lock objects' JavaScript half: the error
// classes, withLock (it runs a JS callback), the disposal symbols on locks,
// and what mongo-locks 3.2 code reads that only JavaScript can give it:
// `lock._id` as an ObjectId of the application's `mongodb`,
// `lock.collection` and `locker.collection` (the application's own
// Collection), `locker.ready`, `locker.MongoLocksError`, and console logging
// by default. Everything else is in Rust. The package's exports are in
// ../index.js.

const os = require('node:os')
// binding.js (napi-rs's loader) through native-loader.js, which says clearly
// what it looked for when no binary matches this platform.
const native = require('./native-loader.js')
const { driverShape, clientOf, settingsOf, checkManagerTls, awsProviderOf, usesAws } = require('./client-settings.js')
const { awsCredentialsFor } = require('./aws-credentials.js')
const metrics = require('./metrics.js')
const { Semaphore, ReadWriteLock, Election, ScheduledJob } = require('./primitives.js')

// The error classes live in errors.js (plain JavaScript, shared with testing.js).
const { MongoLocksError, LockLostError } = require('./errors.js')
const { withLock } = require('./with-lock.js')
const { runOnce, recordView } = require('./once.js')
const { appMongodb } = require('./app-mongodb.js')
const { INDEX_NAMES } = require('./rules.js')
native.registerErrorClasses(MongoLocksError, LockLostError)

const { acquireLock, requireLock } = native
// The Rust class of locks is `NativeLock`; it is exported as `Lock` too, for
// `instanceof` (in the types, `Lock` is mongo-locks' shape).
const { NativeLock } = native
const NativeLockManager = native.LockManager

/** Sets `obj[name]` as an own, writable field, as mongo-locks' class fields are. */
function setField(obj, name, value) {
  Object.defineProperty(obj, name, { value, writable: true, enumerable: true, configurable: true })
  return value
}

// --- Logging: the console by default, as mongo-locks reports its failures ---

// The Rust core calls logger[level](fields, message); without a logger of
// the application's, warnings and errors go to the console (mongo-locks
// prints `console.error("Failed to refresh lock", action)`); debug and info
// are dropped. `logger: false` silences everything.
const PREFIX = 'mongo-locks-native: '
function consoleLine(message, fields) {
  // Server errors come with the prefix already.
  const text = String(message).startsWith(PREFIX) ? String(message) : `${PREFIX}${message}`
  return fields && typeof fields === 'object' && Object.keys(fields).length > 0 ? [text, fields] : [text]
}
const consoleLogger = Object.freeze({
  warn: (fields, message) => console.warn(...consoleLine(message, fields)),
  error: (fields, message) => console.error(...consoleLine(message, fields)),
})

/** The options handed to Rust: `logger` defaulted to the console, or removed when `false`. */
function withDefaultLogger(options) {
  if (options === undefined || options === null) return { logger: consoleLogger }
  // Not an options object: the Rust side refuses it with its own TypeError.
  if (typeof options !== 'object' || Array.isArray(options)) return options
  if (options.logger === false) {
    const { logger, ...rest } = options
    return rest
  }
  if (options.logger === undefined || options.logger === null) return { ...options, logger: consoleLogger }
  return options
}

/** The application's package name: npm's, else the package.json of the working directory. */
function appPackageName() {
  if (process.env.npm_package_name) return process.env.npm_package_name
  try {
    return JSON.parse(require('node:fs').readFileSync(require('node:path').join(process.cwd(), 'package.json'), 'utf8')).name || undefined
  } catch {
    return undefined
  }
}

/** This process, for the `holder` of lock documents; `app` unless options.appName says otherwise. */
function identity(connectionAppName) {
  return { host: os.hostname(), pid: process.pid, app: connectionAppName || appPackageName() }
}

/** `appName` of a connection string. */
function appNameOf(uri) {
  const m = typeof uri === 'string' ? /[?&]appName=([^&]*)/i.exec(uri) : null
  return m ? decodeURIComponent(m[1]) : undefined
}

/** `[options without tls, the checked tls option]`: `tls` is read here, not by Rust. */
function splitTls(options) {
  if (!options || typeof options !== 'object' || Array.isArray(options) || !('tls' in options)) return [options, undefined]
  const { tls, ...rest } = options
  return [rest, checkManagerTls(tls)]
}

// --- LockManager ---

/**
 * Every acquisition (lock, lockAll, a permit, a reader, a writer) reaches
 * its caller through here: the locks learn their manager (for
 * `lock.collection`). Nothing here can fail; what fails before it, between
 * the insert and the hand-over, is given back by Rust (`run_call`).
 */
function handOver(locker, acquired) {
  return acquired.then((got) => {
    for (const lock of got === null || got === undefined ? [] : Array.isArray(got) ? got : [got]) managerOf.set(lock, locker)
    return got
  })
}

/** Which manager took each lock (for `lock.collection`). */
const managerOf = new WeakMap()
/** For managers made by `LockManager.connect()`: where `collection` connects, and its client once made. */
const connectedTo = new WeakMap()
/** The pending or resolved `ready` promise of each manager. */
const readyOf = new WeakMap()

const nativeLock = NativeLockManager.prototype.lock
const nativeLockAll = NativeLockManager.prototype.lockAll
const nativeAcquirePermit = NativeLockManager.prototype.acquirePermit
const nativeAcquireRw = NativeLockManager.prototype.acquireRw
const nativeInspect = NativeLockManager.prototype.inspect
const nativeBeginOnce = NativeLockManager.prototype.beginOnce
const nativeCompleteOnce = NativeLockManager.prototype.completeOnce
const nativeInspectOnce = NativeLockManager.prototype.inspectOnce
/** What `connect()` hands the constructor instead of a collection. */
const CONNECTING = Symbol('mongo-locks-native connect')
/** The connection string of a driver-shaped collection's client, if readable. */
const clientUrl = (collection) => {
  const client = clientOf(collection)
  return client && client.s && typeof client.s.url === 'string' ? client.s.url : undefined
}

/**
 * Hands out locks stored in one MongoDB collection, and keeps them fresh.
 * The Rust class, with mongo-locks' fields; subclass it and spy on its
 * prototype as with mongo-locks'.
 */
class LockManager extends NativeLockManager {
  constructor(collection, options) {
    const [rest, managerTls] = splitTls(options)
    if (collection && collection[CONNECTING] !== undefined) {
      // From connect(): the URL alone says where to connect.
      const uri = collection[CONNECTING]
      const aws = usesAws(undefined, uri) ? awsCredentialsFor() : undefined
      super(uri, withDefaultLogger(rest), settingsOf(undefined, managerTls), identity(appNameOf(uri)), true, aws)
      return
    }
    const shaped = driverShape(collection)
    // The client's own settings, unless options.uri says where to connect.
    const client = rest && rest.uri !== undefined ? undefined : clientOf(shaped)
    const settings = settingsOf(client, managerTls)
    const uri = rest && rest.uri !== undefined ? rest.uri : clientUrl(shaped)
    const appName = (settings && settings.appName) || appNameOf(uri)
    // MONGODB-AWS credentials are found here, as the client's driver finds them.
    const aws = usesAws(settings, uri) ? awsCredentialsFor(client, awsProviderOf(client)) : undefined
    super(shaped, withDefaultLogger(rest), settings, identity(appName), false, aws)
    setField(this, 'collection', collection)
  }

  /**
   * Connects to `uri` and resolves to a ready manager once the indexes exist:
   * made by this class's constructor (or a subclass's), like any other.
   */
  static async connect(uri, options) {
    const Class = typeof this === 'function' ? this : LockManager // called unbound: connect(uri, options)
    const locker = new Class({ [CONNECTING]: uri }, options)
    try {
      await locker.ready
    } catch (err) {
      await locker.close().catch(() => {})
      throw err
    }
    connectedTo.set(locker, {
      uri,
      database: options.database,
      collection: options.collection === undefined ? 'mongo-locks' : options.collection,
      serverSelectionTimeoutMs: options.serverSelectionTimeoutMs,
      client: undefined,
    })
    return locker
  }

  lock(key, options) {
    return handOver(this, nativeLock.call(this, key, options))
  }

  lockAll(keys, options) {
    return handOver(this, nativeLockAll.call(this, keys, options))
  }

  /** A semaphore: at most `options.limit` holders of `key` across every process. */
  semaphore(key, options) {
    return new Semaphore((...args) => handOver(this, nativeAcquirePermit.call(this, ...args)), key, options)
  }

  /** A read/write lock on `key`: many readers or one writer. */
  readWriteLock(key, options) {
    return new ReadWriteLock((...args) => handOver(this, nativeAcquireRw.call(this, ...args)), key, options)
  }

  /** Campaigns for leadership of `key` until stopped (see Election). */
  elect(key, options) {
    return new Election(this, key, options).start()
  }

  /** Runs `fn` once per `options.everyMs` across every instance that schedules it (see ScheduledJob). */
  schedule(name, options, fn) {
    return new ScheduledJob(this, name, options, fn).start()
  }

  /** Who holds `key` now (see the Rust doc of `inspect`), with `createdAt`, `refreshedAt` and `expiresAt` as Dates. */
  inspect(key) {
    return nativeInspect.call(this, key).then((found) => found && {
      ...found,
      holder: found.holder ?? null,
      fencingToken: found.fencingToken ?? null,
      createdAt: found.createdAtMs === undefined || found.createdAtMs === null ? null : new Date(found.createdAtMs),
      refreshedAt: found.refreshedAtMs === undefined || found.refreshedAtMs === null ? null : new Date(found.refreshedAtMs),
      expiresAt: found.expiresAtMs === undefined || found.expiresAtMs === null ? null : new Date(found.expiresAtMs),
    })
  }

  /** This manager's metrics in the Prometheus text format; `labels` are added to every series. */
  metrics({ labels } = {}) {
    return metrics.render(metrics.families(this.metricsSnapshot(), metrics.checkLabels(labels)))
  }

  /** Registers this manager's metrics with a prom-client Registry (read at each scrape). */
  registerMetrics(registry, { labels } = {}) {
    metrics.register(this, registry, metrics.checkLabels(labels))
  }

  /** Runs `fn(lock, lock.signal)` while holding the lock on `key`, and frees it afterwards (see with-lock.js). */
  withLock(key, fn, options) {
    return withLock(this, key, fn, options)
  }

  /**
   * Runs `fn({ signal, fencingToken })` at most once per `key` across every
   * instance while the key's record lives, and resolves to its result; a
   * later call with the same key gets the stored result (see once.js).
   */
  once(key, fn, options) {
    return runOnce(
      {
        begin: (k, hash, o) => nativeBeginOnce.call(this, k, hash, o),
        complete: (lock, ...outcome) => nativeCompleteOnce.call(this, lock, ...outcome),
      },
      key,
      fn,
      options,
    )
  }

  /** The once-record of `key` now (state, who, times, result size), or `null`. */
  inspectOnce(key) {
    return nativeInspectOnce.call(this, key).then(recordView)
  }

  /** Frees the held locks and closes the connections (and the client `collection` made after connect()). */
  async close() {
    try {
      await super.close()
    } finally {
      const target = connectedTo.get(this)
      const client = target && target.client
      if (client) {
        target.client = undefined
        await client.close()
      }
    }
  }
}

Object.defineProperties(LockManager.prototype, {
  // Set as an own field by the constructor. After connect(), made on first
  // read: a collection of a MongoClient of the application's `mongodb`, for
  // the same connection string, database and collection (closed by close()).
  collection: {
    configurable: true,
    get() {
      const target = connectedTo.get(this)
      if (target === undefined) return undefined
      const { MongoClient } = appMongodb('locker.collection after LockManager.connect()')
      const timeout = target.serverSelectionTimeoutMs
      target.client = new MongoClient(target.uri, timeout === undefined ? undefined : { serverSelectionTimeoutMS: timeout })
      return setField(this, 'collection', target.client.db(target.database).collection(target.collection))
    },
    set(value) {
      setField(this, 'collection', value)
    },
  },
  // Resolves (to the index names, as mongo-locks' createIndexes promise does)
  // once the manager is connected and its indexes exist. A rejected `ready`
  // is dropped, so the next read tries again, as lock() does; reading it
  // never leaves an unhandled rejection behind.
  ready: {
    configurable: true,
    get() {
      let ready = readyOf.get(this)
      if (ready === undefined) {
        ready = this.ping().then(
          () => INDEX_NAMES.slice(),
          (err) => {
            readyOf.delete(this)
            throw err
          },
        )
        ready.catch(() => {})
        readyOf.set(this, ready)
      }
      return ready
    },
  },
  MongoLocksError: { value: MongoLocksError, writable: true, configurable: true },
})

// --- Locks ---

Object.defineProperties(NativeLock.prototype, {
  // The lock document's `_id` as an ObjectId of the application's `mongodb`
  // (`lock.id` is its hex string): made on first read, then an own field.
  _id: {
    configurable: true,
    get() {
      return setField(this, '_id', new (appMongodb('lock._id').ObjectId)(this.id))
    },
    set(value) {
      setField(this, '_id', value)
    },
  },
  // The collection of the manager that took the lock.
  collection: {
    configurable: true,
    get() {
      const locker = managerOf.get(this)
      return locker === undefined ? undefined : locker.collection
    },
    set(value) {
      setField(this, 'collection', value)
    },
  },
  [Symbol.asyncDispose]: {
    configurable: true,
    writable: true,
    value: function asyncDispose() {
      return this.free()
    },
  },
  // `using` cannot wait: start the release and keep a failure from becoming
  // an unhandled rejection (the lock then expires after its ttl).
  [Symbol.dispose]: {
    configurable: true,
    writable: true,
    value: function dispose() {
      this.free().catch(() => {})
    },
  },
})

module.exports = { LockManager, NativeLock, acquireLock, requireLock, native }
