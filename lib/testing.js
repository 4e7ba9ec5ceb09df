'use strict'
// `mongo-locks-native/testing`: a locker for tests, held in memory, with the
// rules of the real LockManager (null for a held key, waiting with waitMs and
// signal, expiry one ttl after the last refresh, lost-lock signals, fencing
// tokens, minHoldMs, maxHoldMs) on a clock the test controls: `Date.now()`
// plus what `advance(ms)` added, with timers from the global `setTimeout`, so
// vitest's or Jest's fake timers drive it too. No MongoDB and no native
// addon: this file must load where the addon cannot, so it requires neither
// index.js nor binding.js nor native-loader.js.
//
// Locks are kept as the real manager keeps its documents: one record per
// stored key (`action`), semaphore permits and read/write sides as records
// with object keys (`{ _semaphore: key, permit: i }`, `{ _rwlock: key,
// reader: i }`, `{ _rwlock: key, writer: true }`), so that expiry, takeover
// and loss apply to them exactly as to plain locks. See docs/testing.md.

const os = require('node:os')
const { MongoLocksError, LockLostError } = require('./errors.js')
const metrics = require('./metrics.js')
const { withLock } = require('./with-lock.js')
const { Semaphore, ReadWriteLock, Election, ScheduledJob } = require('./primitives.js')

const PREFIX = 'mongo-locks-native'
const DEFAULT_TTL_MS = 60_000
const DEFAULT_REFRESH_MS = 10_000
const MAX_MS = 2 ** 31 - 1
const MAX_KEY_BYTES = 1024
const MAX_DEPTH = 16
const LOCK_OPTIONS = ['waitMs', 'signal', 'onLost', 'maxHoldMs', 'fencing', 'minHoldMs']
const LOCKER_OPTIONS = ['ttlMs', 'refreshMs', 'appName', 'collection']
const INDEX_NAMES = Object.freeze(['action_1', 'expiresAt_1'])
const LATENCY_BOUNDS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]
const HOLD_BOUNDS = [0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600]

// ---------------------------------------------------------------- values and keys, as the Rust core reads them

/** A value as error messages show it: `undefined`, `"text"`, `42`, `{"a":1}`, `[function f]`. */
function describe(value) {
  let text
  if (value === undefined) text = 'undefined'
  else if (value === null) text = 'null'
  else if (typeof value === 'string') text = JSON.stringify(value)
  else if (typeof value === 'function') text = value.name ? `[function ${value.name}]` : '[function]'
  else if (typeof value === 'symbol') text = 'a Symbol'
  else if (typeof value === 'bigint') text = 'a BigInt'
  else if (typeof value === 'object') {
    let json
    try {
      json = JSON.stringify(value)
    } catch {
      json = undefined
    }
    const tag = Object.prototype.toString.call(value)
    text = typeof json === 'string' && (tag === '[object Object]' || Array.isArray(value)) ? json : safeString(value)
  } else text = String(value)
  return [...text].length > 80 ? `${[...text].slice(0, 80).join('')}…` : text
}

function safeString(value) {
  try {
    return String(value)
  } catch {
    return '<value>'
  }
}

/** A number as Rust prints an f64 in messages. */
function rustNumber(n) {
  if (Number.isNaN(n)) return 'NaN'
  if (n === Infinity) return 'inf'
  if (n === -Infinity) return '-inf'
  return String(n)
}

function isPlainObject(value) {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return false
  const proto = Object.getPrototypeOf(value)
  return proto === null || proto === Object.prototype
}

class KeyProblem extends Error {}

function scalar(value) {
  if (typeof value === 'string') {
    if (value === '') throw new KeyProblem('the empty string is not a key')
    return value
  }
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new KeyProblem(`${rustNumber(value)} is not a finite number`)
    return value
  }
  if (typeof value === 'boolean' || value === null) return value
  throw new KeyProblem(`a nested ${typeof value === 'object' ? 'value' : typeof value} cannot be stored`)
}

function convert(value, depth) {
  if (depth > MAX_DEPTH) throw new KeyProblem(`nested deeper than ${MAX_DEPTH} levels (or cyclic)`)
  if (value === null || typeof value !== 'object') return scalar(value)
  if (Array.isArray(value)) return Array.from(value, (item) => convert(item, depth + 1))
  if (!isPlainObject(value)) throw new KeyProblem(`nested ${describe(value)} is not a plain object`)
  const out = {}
  for (const name of Object.keys(value)) {
    if (name.startsWith('$')) throw new KeyProblem(`field name ${JSON.stringify(name)} starts with '$', which MongoDB reads as an operator`)
    if (name.includes('\0')) throw new KeyProblem(`field name ${JSON.stringify(name)} contains a NUL character`)
    if (value[name] === undefined) continue // dropped, as the Node driver drops them
    out[name] = convert(value[name], depth + 1)
  }
  return out
}

/** The size of `{ action: value }` as BSON, for the key size bound. */
function bsonSize(value) {
  const utf8 = (s) => Buffer.byteLength(s, 'utf8')
  const element = (name, v) => 1 + utf8(name) + 1 + valueSize(v)
  const valueSize = (v) => {
    if (typeof v === 'string') return 4 + utf8(v) + 1
    if (typeof v === 'number') return Number.isInteger(v) && v >= -(2 ** 31) && v < 2 ** 31 && !Object.is(v, -0) ? 4 : 8
    if (typeof v === 'boolean') return 1
    if (v === null) return 0
    const entries = Array.isArray(v) ? v.map((item, i) => [String(i), item]) : Object.entries(v)
    return 4 + entries.reduce((sum, [k, item]) => sum + element(k, item), 0) + 1
  }
  return 4 + element('action', value) + 1
}

/** The stored `action` of a key (arrays as `{ _key_array: key }`, as mongo-locks stores them); a TypeError on a bad key. */
function actionOf(key) {
  const fail = (why) =>
    new TypeError(`${PREFIX}: invalid lock key ${describe(key)}: ${why}; expected a non-empty string, a finite number, an array or a plain object`)
  let action
  try {
    if (key === undefined || key === null) throw new KeyProblem('a lock needs a key')
    if (typeof key === 'function') throw new KeyProblem('functions are not keys')
    if (typeof key === 'symbol') throw new KeyProblem('symbols cannot be stored')
    if (typeof key === 'string' || typeof key === 'number') action = scalar(key)
    else if (Array.isArray(key)) action = { _key_array: convert(key, 1) }
    else if (typeof key === 'object') {
      if (!isPlainObject(key)) throw new KeyProblem('objects other than plain { … } objects are not accepted')
      action = convert(key, 1)
    } else throw new KeyProblem('this type cannot be stored as a key')
    if (typeof action === 'string' && action.includes('\0')) throw new KeyProblem('a key string cannot contain a NUL character')
    const size = bsonSize(action)
    if (size > MAX_KEY_BYTES) throw new KeyProblem(`it takes ${size} bytes as BSON, over the ${MAX_KEY_BYTES}-byte bound`)
  } catch (err) {
    if (err instanceof KeyProblem) throw fail(err.message)
    throw err
  }
  return action
}

/** A stored value as BSON's display shows it (`"a"`, `42`, `{ "a": 1 }`): the identity of a key, and its form in messages. */
function shown(value) {
  if (typeof value === 'string') return JSON.stringify(value)
  if (value === null || typeof value !== 'object') return String(value)
  if (Array.isArray(value)) return `[${value.map(shown).join(', ')}]`
  const entries = Object.entries(value)
  return entries.length === 0 ? '{}' : `{ ${entries.map(([k, v]) => `${JSON.stringify(k)}: ${shown(v)}`).join(', ')} }`
}

/** A key as people read it: a string key as is, anything else in its stored form. */
const keyText = (action) => (typeof action === 'string' ? action : shown(action))

/** A copy of a stored value (so that a caller changing `lock.action` changes nothing here). */
const copy = (value) => (value !== null && typeof value === 'object' ? JSON.parse(JSON.stringify(value)) : value)

// ---------------------------------------------------------------- options

function optionsObject(value) {
  if (value === undefined || value === null) return {}
  if (typeof value !== 'object' || Array.isArray(value)) throw new TypeError(`${PREFIX}: options must be an object, got ${describe(value)}`)
  return value
}

function msOption(name, value, min) {
  if (typeof value === 'number' && value === 0 && min === 0) return 0
  if (typeof value !== 'number' || !Number.isInteger(value) || value < Math.max(min, 1) || value > MAX_MS) {
    throw new TypeError(`${PREFIX}: options.${name} must be a whole number of milliseconds from ${min} to ${MAX_MS}, got ${describe(value)}`)
  }
  return value
}

/** The options of one lock() call, checked as the real manager checks them. */
function lockOptions(value) {
  const o = optionsObject(value)
  const out = { waitMs: undefined, signal: undefined, onLost: undefined, maxHoldMs: undefined, fencing: false, minHoldMs: undefined }
  for (const name of Object.keys(o)) {
    if (!LOCK_OPTIONS.includes(name)) {
      throw new TypeError(`${PREFIX}: unknown lock option ${JSON.stringify(name)}; expected one of ${LOCK_OPTIONS.join(', ')}`)
    }
    const item = o[name]
    if (item === undefined) continue
    if (name === 'waitMs') out.waitMs = msOption(name, item, 0)
    else if (name === 'maxHoldMs' || name === 'minHoldMs') out[name] = msOption(name, item, 1)
    else if (name === 'fencing') {
      if (typeof item !== 'boolean') throw new TypeError(`${PREFIX}: options.fencing must be true or false, got ${describe(item)}`)
      out.fencing = item
    } else if (name === 'onLost') {
      if (typeof item !== 'function') throw new TypeError(`${PREFIX}: options.onLost must be a function, got ${describe(item)}`)
      out.onLost = item
    } else if (name === 'signal') {
      const ok = item !== null && typeof item === 'object' && typeof item.aborted === 'boolean' &&
        typeof item.addEventListener === 'function' && typeof item.removeEventListener === 'function'
      if (!ok) throw new TypeError(`${PREFIX}: options.signal must be an AbortSignal, got ${describe(item)}`)
      out.signal = item
    }
  }
  return out
}

function count(name, n) {
  if (typeof n === 'number' && Number.isInteger(n) && n >= 1 && n <= 1000) return n
  throw new TypeError(`${PREFIX}: ${name} must be a whole number from 1 to 1000, got ${rustNumber(Number(n))}`)
}

function shared(what, options) {
  if (options.fencing) {
    throw new TypeError(`${PREFIX}: options.fencing is for exclusive locks (lock(), write()); ${what} is shared, so tokens would not order its holders`)
  }
}

function lockerOptions(value) {
  if (value === undefined || value === null) return {}
  if (typeof value !== 'object' || Array.isArray(value)) throw new TypeError(`${PREFIX}/testing: createTestLocker(options) needs an object, got ${describe(value)}`)
  for (const name of Object.keys(value)) {
    if (!LOCKER_OPTIONS.includes(name)) {
      throw new TypeError(`${PREFIX}/testing: unknown option ${JSON.stringify(name)}; expected one of ${LOCKER_OPTIONS.join(', ')}`)
    }
  }
  const out = { ...value }
  if (out.ttlMs !== undefined) msOption('ttlMs', out.ttlMs, 1)
  if (out.refreshMs !== undefined) msOption('refreshMs', out.refreshMs, 1)
  if (out.appName !== undefined && typeof out.appName !== 'string') {
    throw new TypeError(`${PREFIX}: options.appName must be a string, got ${describe(out.appName)}`)
  }
  return out
}

// ---------------------------------------------------------------- ids, histograms

let idCounter = Math.floor(Math.random() * 0xffffff)
const idRandom = Array.from({ length: 5 }, () => Math.floor(Math.random() * 256).toString(16).padStart(2, '0')).join('')
/** A fresh ObjectId-shaped hex id: seconds, a per-process random part, a counter. */
function newId() {
  idCounter = (idCounter + 1) % 0x1000000
  return Math.floor(Date.now() / 1000).toString(16).padStart(8, '0').slice(-8) + idRandom + idCounter.toString(16).padStart(6, '0')
}

class Histogram {
  constructor(bounds) {
    this.bounds = bounds
    this.counts = new Array(bounds.length + 1).fill(0)
    this.sum = 0
  }

  observe(ms) {
    const secs = Math.max(0, ms) / 1000
    const i = this.bounds.findIndex((b) => secs <= b)
    this.counts[i === -1 ? this.bounds.length : i]++
    this.sum += secs
  }

  snapshot() {
    let running = 0
    const cumulative = this.counts.map((c) => (running += c))
    return { bounds: this.bounds.slice(), cumulative, count: running, sum: this.sum }
  }
}

const LOST_GONE = 'its document is gone (deleted, or taken over after it expired)'
const LOST_EXPIRED = 'its expiry passed without a successful refresh'

// ---------------------------------------------------------------- locks

/** What each lock object is, kept off the object so that it stays a plain, spy-able object. */
const stateOf = new WeakMap()

/**
 * A lock of the test locker: the surface of the real `NativeLock` (`locked`,
 * `signal`, `fencingToken`, `action`, `holder`, `id`, `free()`, `refresh()`,
 * `await using`).
 */
class TestLock {
  /** True while held: false after `free()`, `close()`, once lost or expired, or after `locked = false`. */
  get locked() {
    const s = stateOf.get(this)
    s.locker._check(s)
    return s.status === 'held'
  }

  /** `false` stops refreshing: the lock expires one ttl after its last refresh, as in mongo-locks; no signal. */
  set locked(value) {
    const s = stateOf.get(this)
    if (value) {
      if (s.locker._check(s) && s.status === 'held') return
      throw new TypeError(`${PREFIX}: lock.locked = true cannot take back a lock that is no longer held; call lock() again`)
    }
    s.locker._abandon(s)
  }

  /** Aborts with a `LockLostError` when the lock is lost; never for a lock freed normally. */
  get signal() {
    const s = stateOf.get(this)
    s.locker._check(s)
    if (!s.controller) {
      s.controller = new AbortController()
      if (s.status === 'lost') s.controller.abort(s.lostError)
    }
    return s.controller.signal
  }

  /** The fencing token (a bigint) of a lock taken with `{ fencing: true }`, else `null`. */
  get fencingToken() {
    const s = stateOf.get(this)
    return s.record.fencingToken === null ? null : BigInt(s.record.fencingToken)
  }

  /** The stored key: arrays as `{ _key_array: key }`, as mongo-locks stores them. */
  get action() {
    return copy(stateOf.get(this).record.action)
  }

  /** Who holds it: this process and the test locker's id. */
  get holder() {
    return { ...stateOf.get(this).record.holder }
  }

  /** The lock's id: 24 hex digits, as a lock document's `_id`. */
  get id() {
    return stateOf.get(this).record.id
  }

  /** The id as an ObjectId of the application's `mongodb` package (needs it installed). */
  get _id() {
    const id = new (appMongodb('lock._id').ObjectId)(this.id)
    Object.defineProperty(this, '_id', { value: id, writable: true, enumerable: true, configurable: true })
    return id
  }

  set _id(value) {
    Object.defineProperty(this, '_id', { value, writable: true, enumerable: true, configurable: true })
  }

  /** The `collection` option given to createTestLocker (undefined without one). */
  get collection() {
    return stateOf.get(this).locker.collection
  }

  set collection(value) {
    Object.defineProperty(this, 'collection', { value, writable: true, enumerable: true, configurable: true })
  }

  /** Releases the lock: `true` if this call released it; `false` if it was already freed, lost or abandoned. */
  free() {
    const s = stateOf.get(this)
    return Promise.resolve().then(() => s.locker._free(s))
  }

  /** Pushes the expiry one ttl forward now; `false` if the lock is no longer held. */
  refresh() {
    const s = stateOf.get(this)
    return Promise.resolve().then(() => s.locker._refresh(s))
  }

  [Symbol.asyncDispose]() {
    return this.free()
  }

  [Symbol.dispose]() {
    this.free().catch(() => {})
  }
}

let mongodb
function appMongodb(needed) {
  if (mongodb === undefined) {
    try {
      mongodb = require('mongodb')
    } catch (cause) {
      throw new Error(`${PREFIX}: ${needed} needs the \`mongodb\` package (a peer dependency): npm install mongodb`, { cause })
    }
  }
  return mongodb
}

// ---------------------------------------------------------------- the locker

/**
 * One record per stored key, as the real manager has one document per key:
 * `{ id, action, shown, key, createdAt, refreshedAt, refreshUntil, expiresAt
 * (null while refreshed), fencingToken, holder, minHoldUntil, lock }`, where
 * `lock` is the lock state while handed out, `'staged'` for a writer waiting
 * for readers, and `null` once nobody refreshes it (abandoned, freed within
 * its minHoldMs, or its holder "died": `expire(key)`).
 */
class TestLocker {
  #ttlMs
  #refreshMs
  #offset = 0
  #records = new Map()
  #tokens = new Map()
  #waiters = []
  #timers = []
  #timer = null
  #timerAt = null
  #closed = false
  #holder
  #stats = { acquired: 0, contended: 0, takenOver: 0, lost: 0, refreshes: 0, refreshCommands: 0, errors: 0 }
  #hist = { acquire: new Histogram(LATENCY_BOUNDS), wait: new Histogram(LATENCY_BOUNDS), hold: new Histogram(HOLD_BOUNDS), refresh: new Histogram(LATENCY_BOUNDS) }
  /** Every acquisition, free, loss, expiry and refusal, in order: `{ type, key, at }`. */
  history = []

  constructor(options) {
    const o = lockerOptions(options)
    this.#ttlMs = o.ttlMs ?? DEFAULT_TTL_MS
    this.#refreshMs = o.refreshMs ?? (o.ttlMs === undefined ? DEFAULT_REFRESH_MS : Math.min(Math.max(1, Math.floor(this.#ttlMs / 6)), DEFAULT_REFRESH_MS))
    if (this.#refreshMs >= this.#ttlMs) {
      throw new TypeError(`${PREFIX}: options.refreshMs (${this.#refreshMs}) must be less than options.ttlMs (${this.#ttlMs}), so that a held lock is refreshed before it expires`)
    }
    this.#holder = Object.freeze({ host: os.hostname(), pid: process.pid, app: o.appName ?? 'test', manager: newId() })
    /** The `collection` option (the test locker stores nothing in it). */
    this.collection = o.collection
    /** The `MongoLocksError` class, as on the real manager. */
    this.MongoLocksError = MongoLocksError
  }

  // ------------------------------------------------ the clock

  /** The locker's clock: `Date.now()` plus everything `advance()` added. */
  now() {
    return Date.now() + this.#offset
  }

  /**
   * Moves the locker's clock `ms` forward and does at once what falls due:
   * expiries (lost signals, `onLost`), waits that run out, minHoldMs ending.
   * Resolves once the promises this settled have run their callbacks.
   */
  async advance(ms) {
    if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0) {
      throw new TypeError(`${PREFIX}/testing: advance(ms) needs a finite number of milliseconds, 0 or more, got ${describe(ms)}`)
    }
    this.#offset += ms
    this.#pump()
    for (let i = 0; i < 10; i++) await null
  }

  #at(at, fn) {
    this.#timers.push({ at, fn })
    this.#timers.sort((a, b) => a.at - b.at)
    this.#arm()
  }

  /** Runs everything due, in time order. */
  #pump() {
    while (this.#timers.length > 0 && this.#timers[0].at <= this.now()) {
      const { fn } = this.#timers.shift()
      fn()
    }
    this.#arm()
  }

  /** One timer of the global setTimeout (fake timers replace it) for the next thing due. */
  #arm() {
    const next = this.#timers[0]
    if (next === undefined) {
      if (this.#timer !== null) clearTimeout(this.#timer)
      this.#timer = null
      this.#timerAt = null
      return
    }
    if (this.#timer !== null && this.#timerAt === next.at) return
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#timerAt = next.at
    this.#timer = setTimeout(() => {
      this.#timer = null
      this.#timerAt = null
      this.#pump()
    }, Math.max(0, next.at - this.now()))
    // Only a caller waiting keeps the process alive, as with the real manager.
    if (this.#waiters.length === 0 && this.#timer && typeof this.#timer.unref === 'function') this.#timer.unref()
  }

  #record(type, record) {
    this.history.push({ type, key: copy(record.key), at: this.now() })
  }

  // ------------------------------------------------ records

  /** When `record` expires (refreshes every refreshMs from its creation, up to refreshUntil), or Infinity while refreshed. */
  #expiresAt(record) {
    if (record.expiresAt !== null) return record.expiresAt
    return Infinity
  }

  /** Stops refreshing `record` at `until` (its last refresh is the last one due by then) and schedules its expiry. */
  #stopRefreshing(record, until) {
    if (record.expiresAt !== null) return
    const ticks = Math.max(0, Math.floor((until - record.createdAt) / this.#refreshMs))
    record.refreshedAt = Math.max(record.refreshedAt, record.createdAt + ticks * this.#refreshMs)
    record.expiresAt = record.refreshedAt + this.#ttlMs
    this.#at(record.expiresAt, () => this.#expireIfDue(record))
  }

  /** The record's last refresh as of now, for inspect(). */
  #refreshedAt(record) {
    if (record.expiresAt !== null) return record.refreshedAt
    const ticks = Math.max(0, Math.floor((this.now() - record.createdAt) / this.#refreshMs))
    return Math.max(record.refreshedAt, record.createdAt + ticks * this.#refreshMs)
  }

  #expireIfDue(record) {
    if (this.#records.get(record.shown) !== record || record.expired) return
    if (this.#expiresAt(record) > this.now()) return
    record.expired = true
    this.#record('expired', record)
    if (record.lock && record.lock !== 'staged') this.#lose(record.lock, LOST_EXPIRED, false)
    this.#wake()
  }

  /** The record of `shown` if it is live; an expired one is removed (a takeover) and counted. */
  #live(shown) {
    const record = this.#records.get(shown)
    if (record === undefined) return undefined
    this.#expireIfDue(record)
    if (!record.expired) return record
    this.#records.delete(shown)
    this.#stats.takenOver++
    return undefined
  }

  /** Takes `action` if nobody holds it: the new record, or null. */
  #take(action, key, options, { staged = false } = {}) {
    const shownKey = shown(action)
    if (this.#live(shownKey)) return null
    const now = this.now()
    let fencingToken = null
    if (options.fencing) {
      fencingToken = (this.#tokens.get(shownKey) ?? 0) + 1
      this.#tokens.set(shownKey, fencingToken)
    }
    const record = {
      id: newId(),
      action,
      shown: shownKey,
      key,
      createdAt: now,
      refreshedAt: now,
      expiresAt: null,
      expired: false,
      fencingToken,
      holder: this.#holder,
      minHoldUntil: options.minHoldMs === undefined ? null : now + options.minHoldMs,
      lock: staged ? 'staged' : null,
    }
    this.#records.set(shownKey, record)
    return record
  }

  /** Removes `record` (a free, a withdrawal) and wakes the waiters. */
  #remove(record) {
    if (this.#records.get(record.shown) === record) this.#records.delete(record.shown)
    this.#wake()
  }

  /** Hands `record` out as a lock. */
  #handOut(record, options, startedAt) {
    const lock = new TestLock()
    const state = {
      locker: this,
      lock,
      record,
      status: 'held',
      controller: null,
      lostError: null,
      onLost: options.onLost,
      acquiredAt: this.now(),
    }
    stateOf.set(lock, state)
    record.lock = state
    if (options.maxHoldMs !== undefined) {
      // Refreshed up to maxHoldMs, then left to expire one ttl after its last refresh.
      const until = record.createdAt + options.maxHoldMs
      this.#at(until, () => {
        if (record.lock === state && state.status === 'held') this.#stopRefreshing(record, until)
      })
    }
    this.#stats.acquired++
    this.#hist.acquire.observe(this.now() - startedAt)
    this.#record('acquired', record)
    return lock
  }

  /** Marks a held lock lost: its signal aborts and onLost is called, with a LockLostError. */
  #lose(state, why, recordIt = true) {
    if (state.status !== 'held') return
    state.status = 'lost'
    state.lostError = new LockLostError(`${PREFIX}: lost the lock on ${JSON.stringify(keyText(state.record.action))}: ${why}`)
    this.#stats.lost++
    this.#hist.hold.observe(this.now() - state.acquiredAt)
    if (recordIt) this.#record('lost', state.record)
    if (state.controller) state.controller.abort(state.lostError)
    if (state.onLost) {
      try {
        state.onLost(state.lostError)
      } catch {
        // a throwing callback is ignored, as the real manager ignores it
      }
    }
  }

  /** Whether `state` is still held now (a lock past its expiry is lost here and then). */
  _check(state) {
    if (state.status === 'held') this.#expireIfDue(state.record)
    return state.status === 'held'
  }

  _abandon(state) {
    this._check(state)
    if (state.status !== 'held') return
    state.status = 'abandoned'
    this.#hist.hold.observe(this.now() - state.acquiredAt)
    state.record.lock = null
    this.#stopRefreshing(state.record, this.now())
  }

  _free(state) {
    this._check(state)
    const { record } = state
    const wasHeld = state.status === 'held'
    if (wasHeld) {
      state.status = 'freed'
      this.#hist.hold.observe(this.now() - state.acquiredAt)
      this.#record('freed', record)
    }
    if (this.#closed || this.#records.get(record.shown) !== record || record.lock !== state) return false
    record.lock = null
    if (record.minHoldUntil !== null && record.minHoldUntil > this.now()) {
      // minHoldMs: freed early, the key stays taken until then.
      record.expiresAt = record.minHoldUntil
      this.#at(record.minHoldUntil, () => this.#expireIfDue(record))
      return wasHeld
    }
    // A lost lock's record still there is ours: removing it frees the key sooner; the answer stays false.
    this.#remove(record)
    return wasHeld
  }

  _refresh(state) {
    if (!this._check(state)) return false
    const { record } = state
    record.refreshedAt = this.now()
    this.#stats.refreshes++
    this.#hist.refresh.observe(0)
    if (record.expiresAt !== null) {
      record.expiresAt = record.refreshedAt + this.#ttlMs
      this.#at(record.expiresAt, () => this.#expireIfDue(record))
    }
    return true
  }

  // ------------------------------------------------ waiting

  /**
   * One acquisition: `attempt()` returns a lock or null, and is tried now and
   * again whenever a key is released or expires, until `waitMs` runs out or
   * the signal aborts. `giveUp()` is called when it ends without a lock.
   */
  #acquire(options, attempt, giveUp = () => {}) {
    if (this.#closed) return Promise.reject(this.#closedError())
    const { signal } = options
    if (signal && signal.aborted) return Promise.reject(signal.reason)
    const startedAt = this.now()
    const first = attempt(startedAt)
    if (first) return Promise.resolve(first)
    if (!options.waitMs) {
      giveUp()
      return Promise.resolve(this.#refuse(options))
    }
    return new Promise((resolve, reject) => {
      const waiter = { attempt: () => attempt(startedAt), settle: null }
      const onAbort = () => waiter.settle(() => reject(signal.reason))
      waiter.settle = (how) => {
        const i = this.#waiters.indexOf(waiter)
        if (i === -1) return
        this.#waiters.splice(i, 1)
        if (signal) signal.removeEventListener('abort', onAbort)
        this.#hist.wait.observe(this.now() - startedAt)
        how()
        this.#arm()
      }
      waiter.resolve = (lock) => waiter.settle(() => resolve(lock))
      waiter.fail = (err) => waiter.settle(() => reject(err))
      this.#waiters.push(waiter)
      if (signal) signal.addEventListener('abort', onAbort, { once: true })
      this.#at(startedAt + options.waitMs, () => {
        if (!this.#waiters.includes(waiter)) return
        // One last attempt at the deadline, as the real wait makes.
        const lock = waiter.attempt()
        if (lock) return waiter.resolve(lock)
        waiter.settle(() => {
          giveUp()
          resolve(this.#refuse(options))
        })
      })
    }).catch((err) => {
      giveUp()
      throw err
    })
  }

  #refuse(options) {
    this.#stats.contended++
    if (options.key !== undefined) this.history.push({ type: 'refused', key: copy(options.key), at: this.now() })
    return null
  }

  /** Something was released or expired: every waiter tries again, first come first served. */
  #wake() {
    for (const waiter of this.#waiters.slice()) {
      if (!this.#waiters.includes(waiter)) continue
      const lock = waiter.attempt()
      if (lock) waiter.resolve(lock)
    }
  }

  #closedError() {
    const err = new MongoLocksError(`${PREFIX}: this LockManager is closed`)
    err.closed = true
    return err
  }

  /** Runs `fn` (the checks of a call), turning a throw into a rejection as the real manager does. */
  #call(fn) {
    try {
      return fn()
    } catch (err) {
      return Promise.reject(err)
    }
  }

  // ------------------------------------------------ the LockManager surface

  /** Takes the lock on `key`: the lock, or `null` when it is held (after `options.waitMs`). */
  lock(key, options) {
    return this.#call(() => {
      const action = actionOf(key)
      return this.#lockAction(action, key, lockOptions(options))
    })
  }

  #lockAction(action, key, o) {
    o.key = key
    return this.#acquire(o, (startedAt) => {
      const record = this.#take(action, key, o)
      return record && this.#handOut(record, o, startedAt)
    })
  }

  /** All of `keys` or none, taken in one fixed order, `options.waitMs` one budget for the set; the locks in the order of `keys`. */
  lockAll(keys, options) {
    return this.#call(() => {
      if (!Array.isArray(keys) || keys.length === 0) {
        throw new TypeError(`${PREFIX}: lockAll(keys) needs a non-empty array of keys, got ${describe(keys)}`)
      }
      const order = keys.map((key, i) => ({ i, key, action: actionOf(key) })).map((e) => ({ ...e, shown: shown(e.action) }))
      order.sort((a, b) => (a.shown < b.shown ? -1 : a.shown > b.shown ? 1 : 0))
      for (let j = 1; j < order.length; j++) {
        if (order[j].shown === order[j - 1].shown) {
          throw new TypeError(`${PREFIX}: lockAll(keys) got the key ${order[j].shown} twice; each key can be locked once`)
        }
      }
      const o = lockOptions(options)
      const deadline = o.waitMs === undefined ? undefined : this.now() + o.waitMs
      return (async () => {
        const taken = []
        for (const entry of order) {
          const waitMs = deadline === undefined ? undefined : Math.max(0, deadline - this.now())
          let lock
          try {
            lock = await this.#lockAction(entry.action, entry.key, { ...o, waitMs })
          } catch (err) {
            for (const t of taken.reverse()) await t.lock.free()
            throw err
          }
          if (!lock) {
            for (const t of taken.reverse()) await t.lock.free()
            return null
          }
          taken.push({ i: entry.i, lock })
        }
        const out = new Array(keys.length)
        for (const t of taken) out[t.i] = t.lock
        return out
      })()
    })
  }

  /** A permit of the semaphore `key` (the real manager's call behind `semaphore(key).acquire()`). */
  #acquirePermit(key, limit, options) {
    return this.#call(() => {
      const action = actionOf(key)
      count('limit', limit)
      const o = lockOptions(options)
      shared('a semaphore permit', o)
      o.key = { _semaphore: copy(action) }
      return this.#acquire(o, (startedAt) => {
        for (let permit = 0; permit < limit; permit++) {
          const slot = { _semaphore: action, permit }
          const record = this.#take(slot, slot, o)
          if (record) return this.#handOut(record, o, startedAt)
        }
        return null
      })
    })
  }

  /** A read or write side of the read/write lock `key`. */
  #acquireRw(key, maxReaders, write, options) {
    return this.#call(() => {
      const action = actionOf(key)
      count('maxReaders', maxReaders)
      const o = lockOptions(options)
      const writerAction = { _rwlock: action, writer: true }
      const readersLive = () => {
        for (let i = 0; i < maxReaders; i++) if (this.#live(shown({ _rwlock: action, reader: i }))) return true
        return false
      }
      if (!write) {
        shared('a read lock', o)
        o.key = { _rwlock: copy(action) }
        return this.#acquire(o, (startedAt) => {
          if (this.#live(shown(writerAction))) return null // a writer holds or waits: it goes first
          for (let reader = 0; reader < maxReaders; reader++) {
            const slot = { _rwlock: action, reader }
            const record = this.#take(slot, slot, o)
            if (record) return this.#handOut(record, o, startedAt)
          }
          return null
        })
      }
      // The writer takes its record first (keeping new readers out), then waits for the readers to leave.
      let staged = null
      o.key = writerAction
      return this.#acquire(o, (startedAt) => {
        if (staged === null || staged.expired || this.#records.get(staged.shown) !== staged) {
          staged = this.#take(writerAction, writerAction, o, { staged: true })
          if (!staged) return null
        }
        if (readersLive()) return null
        const record = staged
        staged = null
        return this.#handOut(record, o, startedAt)
      }, () => {
        // A writer that gives up takes its record back at once (minHoldMs is for locks handed out).
        if (staged !== null) {
          const record = staged
          staged = null
          if (this.#records.get(record.shown) === record) this.#remove(record)
        }
      })
    })
  }

  /** Runs `fn(lock, lock.signal)` while holding the lock on `key`, and frees it afterwards (see with-lock.js). */
  withLock(key, fn, options) {
    return withLock(this, key, fn, options)
  }

  /** A semaphore on `key`: at most `options.limit` holders. */
  semaphore(key, options) {
    return new Semaphore((...args) => this.#acquirePermit(...args), key, options)
  }

  /** A read/write lock on `key`: many readers or one writer. */
  readWriteLock(key, options) {
    return new ReadWriteLock((...args) => this.#acquireRw(...args), key, options)
  }

  /** Campaigns for leadership of `key` until stopped. */
  elect(key, options) {
    return new Election(this, key, options).start()
  }

  /** Runs `fn` once per `options.everyMs` (on the global timers, which fake timers drive). */
  schedule(name, options, fn) {
    return new ScheduledJob(this, name, options, fn).start()
  }

  /** Who holds `key` now, as the real `inspect` reports it; `null` when nobody does. */
  inspect(key) {
    return this.#call(() => {
      const record = this.#records.get(shown(actionOf(key)))
      if (record === undefined) return Promise.resolve(null)
      this.#expireIfDue(record)
      const now = this.now()
      const expiresAtMs = record.expiresAt === null ? this.#refreshedAt(record) + this.#ttlMs : record.expiresAt
      const refreshedAtMs = this.#refreshedAt(record)
      return Promise.resolve({
        id: record.id,
        holder: { ...record.holder },
        heldByThisManager: true,
        createdAtMs: record.createdAt,
        refreshedAtMs,
        expiresAtMs,
        serverTimeMs: now,
        ageMs: now - record.createdAt,
        expiresInMs: expiresAtMs - now,
        fencingToken: record.fencingToken,
        createdAt: new Date(record.createdAt),
        refreshedAt: new Date(refreshedAtMs),
        expiresAt: new Date(expiresAtMs),
      })
    })
  }

  /** Counters since the locker was made (`refreshes` counts `lock.refresh()` calls: the background refresh is implicit). */
  stats() {
    return { held: this.held, ...this.#stats }
  }

  metricsSnapshot() {
    return {
      counters: this.stats(),
      waiting: this.#waiters.length,
      acquireSeconds: this.#hist.acquire.snapshot(),
      waitSeconds: this.#hist.wait.snapshot(),
      holdSeconds: this.#hist.hold.snapshot(),
      refreshSeconds: this.#hist.refresh.snapshot(),
    }
  }

  metrics({ labels } = {}) {
    return metrics.render(metrics.families(this.metricsSnapshot(), metrics.checkLabels(labels)))
  }

  registerMetrics(registry, { labels } = {}) {
    metrics.register(this, registry, metrics.checkLabels(labels))
  }

  /** Resolves at once: there is nothing to connect to. */
  get ready() {
    return Promise.resolve(INDEX_NAMES.slice())
  }

  ping() {
    return Promise.resolve(0)
  }

  get settings() {
    return null
  }

  get writeConcern() {
    return null
  }

  get serverClockOffsetMs() {
    return this.#offset
  }

  get serverClockUncertaintyMs() {
    return 0
  }

  /** Frees the locks still held (without signalling them lost); later calls reject, waiting ones too. */
  async close() {
    if (this.#closed) return
    for (const waiter of this.#waiters.slice()) waiter.fail(this.#closedError())
    for (const state of this.#heldStates()) this._free(state)
    for (const record of [...this.#records.values()]) {
      if (record.lock === 'staged') this.#records.delete(record.shown)
    }
    this.#closed = true
    this.#timers = []
    this.#arm()
  }

  // ------------------------------------------------ for assertions

  #heldStates() {
    const out = []
    for (const record of [...this.#records.values()]) {
      const state = record.lock
      if (state && state !== 'staged' && this._check(state)) out.push(state)
    }
    return out
  }

  /** How many locks are held now (as the real manager's `held`). */
  get held() {
    return this.#heldStates().length
  }

  /** The keys of the locks held now, in the order they were taken (permits and read/write sides by their stored key). */
  get heldKeys() {
    return this.#heldStates()
      .sort((a, b) => a.acquiredAt - b.acquiredAt)
      .map((s) => copy(s.record.key))
  }

  /** The holder of `key` died: its lock expires now (its signal aborts) and the next lock() takes it over. */
  expire(key) {
    const record = this.#records.get(shown(actionOf(key)))
    if (record === undefined || record.expired) throw new Error(`${PREFIX}/testing: expire(${describe(key)}): nobody holds this key`)
    if (record.expiresAt === null || record.expiresAt > this.now()) {
      record.refreshedAt = Math.min(record.refreshedAt, this.now() - this.#ttlMs)
      record.expiresAt = this.now()
    }
    this.#expireIfDue(record)
    this.#arm()
  }

  /** The lock on `key` is lost while held (its record deleted, as by a takeover): its signal aborts, onLost is called, the key is free. */
  takeOver(key) {
    const record = this.#records.get(shown(actionOf(key)))
    if (record === undefined || record.expired) throw new Error(`${PREFIX}/testing: takeOver(${describe(key)}): nobody holds this key`)
    this.#records.delete(record.shown)
    if (record.lock && record.lock !== 'staged') this.#lose(record.lock, LOST_GONE)
    else this.#record('lost', record)
    this.#wake()
  }

  /** Throws an Error naming the locks still held: call it in afterEach to catch a missing free(). */
  assertNoneHeld() {
    const held = this.#heldStates().sort((a, b) => a.acquiredAt - b.acquiredAt)
    if (held.length === 0) return
    const list = held.map((s) => `${describe(s.record.key)} (taken ${this.now() - s.acquiredAt} ms ago)`).join(', ')
    throw new Error(`${PREFIX}/testing: ${held.length} lock${held.length === 1 ? '' : 's'} still held: ${list}. Free each lock (try/finally, or await using)`)
  }
}

/** A locker with the real LockManager's rules, held in memory, for tests. */
function createTestLocker(options) {
  return new TestLocker(options)
}

module.exports = { createTestLocker, TestLocker, TestLock, MongoLocksError, LockLostError }
