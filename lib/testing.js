'use strict'
// `mongo-locks-native/testing`: a locker for tests, held in memory, with the
// rules of the real LockManager (null for a held key, waiting with waitMs and
// signal, expiry one ttl after the last refresh, lost-lock signals, fencing
// tokens, minHoldMs, maxHoldMs) on a clock the test controls: `Date.now()`
// plus what `advance(ms)` added, with timers from the global `setTimeout`, so
// vitest's or Jest's fake timers drive it too. No MongoDB and no native
// addon: this file must load where the addon cannot, so it requires neither
// ../index.js nor manager.js nor ../binding.js nor native-loader.js
// (__test__/unit/modules.test.mjs checks that none of its requires reaches them).
//
// Locks are kept as the real manager keeps its documents: one record per
// stored key (`action`), semaphore permits and read/write sides as records
// with object keys (`{ _semaphore: key, permit: i }`, `{ _rwlock: key,
// reader: i }`, `{ _rwlock: key, writer: true }`), so that expiry, takeover
// and loss apply to them exactly as to plain locks. `once()` records are
// records too (`{ _once: key }`): a run holds one as a lock, and a finished
// record stays in its place until it expires, as the real documents do; the
// rules of a run are lib/once.js's, shared with the real manager. See
// docs/testing.md.

const os = require('node:os')
const { MongoLocksError, LockLostError, OnceInProgressError, OnceMismatchError, OnceFailedError } = require('./errors.js')
const metrics = require('./metrics.js')
const { withLock } = require('./with-lock.js')
const { Semaphore, ReadWriteLock, Election, ScheduledJob } = require('./primitives.js')
const { appMongodb } = require('./app-mongodb.js')
const { runOnce, recordView } = require('./once.js')
const { actionOf, shown, bsonDisplay, keyText } = require('./keys.js')
const {
  PREFIX, DEFAULT_TTL_MS, defaultRefreshMs, MAX_MS, LOCK_OPTIONS, INDEX_NAMES, LATENCY_BOUNDS, HOLD_BOUNDS, LOSS,
  describe, quote, messages, SLOTS, slotAction,
} = require('./rules.js')

const LOCKER_OPTIONS = ['ttlMs', 'refreshMs', 'appName', 'collection']

// ---------------------------------------------------------------- keys

/** A copy of a stored value (so that a caller changing `lock.action` changes nothing here). */
const copy = (value) => (value !== null && typeof value === 'object' ? JSON.parse(JSON.stringify(value)) : value)

/** The stored key of the once-record of `key` (as src/engine/once.rs record_action): a TypeError on a bad key. */
const onceAction = (key) => ({ _once: actionOf(key) })

// ---------------------------------------------------------------- options

function optionsObject(value) {
  if (value === undefined || value === null) return {}
  if (typeof value !== 'object' || Array.isArray(value)) throw new TypeError(messages.optionsNotObject(value))
  return value
}

function msOption(name, value, min) {
  if (typeof value === 'number' && value === 0 && min === 0) return 0
  if (typeof value !== 'number' || !Number.isInteger(value) || value < Math.max(min, 1) || value > MAX_MS) {
    throw new TypeError(messages.msOption(name, min, value))
  }
  return value
}

/** The options of one lock() call, checked as the real manager checks them. */
function lockOptions(value) {
  const o = optionsObject(value)
  const out = { waitMs: undefined, signal: undefined, onLost: undefined, maxHoldMs: undefined, fencing: false, minHoldMs: undefined }
  for (const name of Object.keys(o)) {
    if (!LOCK_OPTIONS.includes(name)) {
      throw new TypeError(messages.unknownOption('lock option', name, LOCK_OPTIONS))
    }
    const item = o[name]
    if (item === undefined) continue
    if (name === 'waitMs') out.waitMs = msOption(name, item, 0)
    else if (name === 'maxHoldMs' || name === 'minHoldMs') out[name] = msOption(name, item, 1)
    else if (name === 'fencing') {
      if (typeof item !== 'boolean') throw new TypeError(messages.fencingNotBoolean(item))
      out.fencing = item
    } else if (name === 'onLost') {
      if (typeof item !== 'function') throw new TypeError(messages.onLostNotFunction(item))
      out.onLost = item
    } else if (name === 'signal') {
      const ok = item !== null && typeof item === 'object' && typeof item.aborted === 'boolean' &&
        typeof item.addEventListener === 'function' && typeof item.removeEventListener === 'function'
      if (!ok) throw new TypeError(messages.signalNotSignal(item))
      out.signal = item
    }
  }
  return out
}

function shared(what, options) {
  if (options.fencing) {
    throw new TypeError(messages.fencingShared(what))
  }
}

function lockerOptions(value) {
  if (value === undefined || value === null) return {}
  if (typeof value !== 'object' || Array.isArray(value)) throw new TypeError(`${PREFIX}/testing: createTestLocker(options) needs an object, got ${describe(value)}`)
  for (const name of Object.keys(value)) {
    if (!LOCKER_OPTIONS.includes(name)) {
      throw new TypeError(`${PREFIX}/testing: unknown option ${quote(name)}; expected one of ${LOCKER_OPTIONS.join(', ')}`)
    }
  }
  const out = { ...value }
  if (out.ttlMs !== undefined) msOption('ttlMs', out.ttlMs, 1)
  if (out.refreshMs !== undefined) msOption('refreshMs', out.refreshMs, 1)
  // As the real manager: an empty name would leave the locks' holder.app blank.
  if (out.appName !== undefined && (typeof out.appName !== 'string' || out.appName === '')) {
    throw new TypeError(messages.stringOption('appName', out.appName))
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

// ---------------------------------------------------------------- the locker

/**
 * One record per stored key, as the real manager has one document per key:
 * `{ id, action, shown, key, createdAt, refreshedAt, refreshUntil, expiresAt
 * (null while refreshed), fencingToken, holder, minHoldUntil, lock, once }`,
 * where `lock` is the lock state while handed out, `'staged'` for a writer
 * waiting for readers, and `null` once nobody refreshes it (abandoned, freed
 * within its minHoldMs, or its holder "died": `expire(key)`). `once` is set
 * on a finished once-record: `{ state, stored, payloadHash, resultBytes,
 * completedAt }`, as the real document's fields.
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
  #stats = {
    acquired: 0, contended: 0, takenOver: 0, lost: 0, refreshes: 0, refreshCommands: 0, errors: 0,
    onceRuns: 0, onceReplays: 0, onceMismatches: 0, onceTakeovers: 0,
  }
  #hist = { acquire: new Histogram(LATENCY_BOUNDS), wait: new Histogram(LATENCY_BOUNDS), hold: new Histogram(HOLD_BOUNDS), refresh: new Histogram(LATENCY_BOUNDS) }
  /** Every acquisition, free, loss, expiry and refusal, in order: `{ type, key, at }`. */
  history = []

  constructor(options) {
    const o = lockerOptions(options)
    this.#ttlMs = o.ttlMs ?? DEFAULT_TTL_MS
    this.#refreshMs = o.refreshMs ?? defaultRefreshMs(o.ttlMs)
    if (this.#refreshMs >= this.#ttlMs) throw new TypeError(messages.refreshNotBelowTtl(this.#refreshMs, this.#ttlMs))
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
    // A finished once-record is no lock: its end is no event of the history.
    if (!record.once) this.#record('expired', record)
    if (record.lock && record.lock !== 'staged') this.#lose(record.lock, LOSS.expired, false)
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
      once: null,
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
    state.lostError = new LockLostError(messages.lost(keyText(state.record.action), why))
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
    // A run in progress met by once() reads the record and tries no insert
    // on the real manager, so it is not counted as contended there either.
    if (!options.once) this.#stats.contended++
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
    const err = new MongoLocksError(messages.closed)
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
        throw new TypeError(messages.lockAllKeys(keys))
      }
      const order = keys.map((key, i) => ({ i, key, action: actionOf(key) })).map((e) => ({ ...e, shown: shown(e.action) }))
      order.sort((a, b) => (a.shown < b.shown ? -1 : a.shown > b.shown ? 1 : 0))
      for (let j = 1; j < order.length; j++) {
        if (order[j].shown === order[j - 1].shown) {
          throw new TypeError(messages.lockAllTwice(bsonDisplay(order[j].action)))
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
      const o = lockOptions(options)
      shared('a semaphore permit', o)
      o.key = { [SLOTS.permit.tag]: copy(action) }
      return this.#acquire(o, (startedAt) => {
        for (let permit = 0; permit < limit; permit++) {
          const slot = slotAction('permit', action, permit)
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
      const o = lockOptions(options)
      const writerAction = slotAction('writer', action)
      const readersLive = () => {
        for (let i = 0; i < maxReaders; i++) if (this.#live(shown(slotAction('reader', action, i)))) return true
        return false
      }
      if (!write) {
        shared('a read lock', o)
        o.key = { [SLOTS.reader.tag]: copy(action) }
        return this.#acquire(o, (startedAt) => {
          if (this.#live(shown(writerAction))) return null // a writer holds or waits: it goes first
          for (let reader = 0; reader < maxReaders; reader++) {
            const slot = slotAction('reader', action, reader)
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

  /**
   * Runs `fn({ signal, fencingToken })` at most once per `key` while the
   * key's record lives, and resolves to its result; a later call gets the
   * stored result (lib/once.js, the same rules as the real manager's).
   */
  once(key, fn, options) {
    return runOnce(
      {
        begin: (k, hash, o) => this.#call(() => this.#beginOnce(k, hash, o)),
        complete: (lock, ...outcome) => Promise.resolve().then(() => this.#completeOnce(stateOf.get(lock), ...outcome)),
      },
      key,
      fn,
      options,
    )
  }

  /**
   * Claims the record of `key`: a lock on it (this call runs), the finished
   * record as the real `beginOnce` gives it, or null when a run still holds
   * it after `waitMs`. Counts as src/engine/once.rs `begin` counts.
   */
  #beginOnce(key, payloadHash, options) {
    const action = onceAction(key)
    const shownKey = shown(action)
    const o = lockOptions(options)
    o.fencing = true // each run of a key gets a higher token, as on the real manager
    o.key = { _once: copy(key) }
    o.once = true
    return this.#acquire(o, (startedAt) => {
      const found = this.#records.get(shownKey)
      if (found !== undefined) this.#expireIfDue(found)
      const tookOver = found !== undefined && found.expired
      if (found !== undefined && !tookOver) {
        if (!found.once) return null // a run holds it
        // A call without a payload, or a record stored without one, is not compared.
        const stored = found.once.payloadHash
        const matches = stored === undefined || payloadHash === undefined || stored === payloadHash
        this.#stats[matches ? 'onceReplays' : 'onceMismatches']++
        return { state: found.once.state, stored: found.once.stored, matches }
      }
      const record = this.#take(action, o.key, o)
      if (!record) return null
      this.#stats.onceRuns++
      // A run whose holder died, not a finished record past its ttlMs.
      if (tookOver && !found.once) this.#stats.onceTakeovers++
      return this.#handOut(record, o, startedAt)
    })
  }

  /**
   * Stores how the run holding `state` ended, if its record is still its
   * own (not taken over after it expired, nor deleted); else `false`, the
   * run's lock lost, as the real conditional update answers.
   */
  #completeOnce(state, failed, stored, payloadHash, bytes, ttlMs) {
    if (this.#closed) throw this.#closedError()
    const { record } = state
    if (this.#records.get(record.shown) !== record || record.once) {
      this.#lose(state, LOSS.gone)
      return false
    }
    const now = this.now()
    if (state.status === 'held') {
      state.status = 'freed'
      this.#hist.hold.observe(now - state.acquiredAt)
      this.#record('freed', record)
    }
    // A record that expired but was not taken over yet is still this run's:
    // the real update lands on it too, and it lives on as the finished record.
    record.lock = null
    record.expired = false
    record.once = { state: failed ? 'failed' : 'completed', stored, payloadHash, resultBytes: bytes, completedAt: now }
    record.expiresAt = now + ttlMs
    // Callers waiting for this run now read its outcome.
    this.#wake()
    return true
  }

  /** The once-record of `key` now (state, who, times, result size), or `null`, as the real `inspectOnce`. */
  inspectOnce(key) {
    return this.#call(() => {
      const record = this.#records.get(shown(onceAction(key)))
      if (record === undefined) return Promise.resolve(null)
      this.#expireIfDue(record)
      const { once } = record
      const expiresAtMs = once || record.expiresAt !== null ? record.expiresAt : this.#refreshedAt(record) + this.#ttlMs
      return Promise.resolve(recordView({
        state: once ? once.state : 'running',
        holder: { ...record.holder },
        fencingToken: record.fencingToken,
        createdAtMs: record.createdAt,
        completedAtMs: once ? once.completedAt : undefined,
        expiresAtMs,
        resultBytes: once ? once.resultBytes : undefined,
        payloadHash: once ? once.payloadHash : undefined,
        serverTimeMs: this.now(),
      }))
    })
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

  /**
   * The record of `once(key)` expires now: a run in progress lost its
   * holder (its `signal` aborts; the next `once(key)` takes the record over
   * and runs again with a higher fencing token), or a finished record
   * reached its ttlMs (the next call runs again).
   */
  expireOnce(key) {
    const record = this.#records.get(shown(onceAction(key)))
    if (record !== undefined) this.#expireIfDue(record)
    if (record === undefined || record.expired) {
      throw new Error(`${PREFIX}/testing: expireOnce(${describe(key)}): there is no live once() record of this key`)
    }
    record.refreshedAt = Math.min(record.refreshedAt, this.now() - this.#ttlMs)
    record.expiresAt = this.now()
    this.#expireIfDue(record)
    this.#arm()
  }

  /** The lock on `key` is lost while held (its record deleted, as by a takeover): its signal aborts, onLost is called, the key is free. */
  takeOver(key) {
    const record = this.#records.get(shown(actionOf(key)))
    if (record === undefined || record.expired) throw new Error(`${PREFIX}/testing: takeOver(${describe(key)}): nobody holds this key`)
    this.#records.delete(record.shown)
    if (record.lock && record.lock !== 'staged') this.#lose(record.lock, LOSS.gone)
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

module.exports = {
  createTestLocker, TestLocker, TestLock, MongoLocksError, LockLostError, OnceInProgressError, OnceMismatchError, OnceFailedError,
}
