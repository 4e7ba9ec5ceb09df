'use strict'
// `locker.once(key, fn, options)`: runs `fn` at most once per key while the
// key's record lives, across every instance, and hands later calls the
// stored outcome. The run, the options, how outcomes are stored (what
// survives) and payload fingerprints, written once for both lockers: the
// real manager (manager.js, over the native calls of src/js/once.rs) and
// the test locker (testing.js, over records in memory) each give `runOnce`
// a backend with `begin` and `complete`. Plain JavaScript, no addon.

const { createHash } = require('node:crypto')
const { PREFIX, MAX_MS, LOSS, describe, quote, messages } = require('./rules.js')
const { keyText, isPlainObject } = require('./keys.js')
const { LockLostError, OnceInProgressError, OnceMismatchError, OnceFailedError } = require('./errors.js')

/** How long a finished record lives when `ttlMs` is not given: a day, as long as clients commonly retry. */
const DEFAULT_ONCE_TTL_MS = 24 * 60 * 60 * 1000
/** The largest result stored when `maxResultBytes` is not given (its size as BSON). */
const DEFAULT_MAX_RESULT_BYTES = 1024 * 1024
/** The most `maxResultBytes` can be: the record must stay under MongoDB's 16 MiB document limit. */
const MAX_RESULT_BYTES = 15 * 1024 * 1024
/** The options of `once(key, fn, options)`, in the order messages list them. */
const ONCE_OPTIONS = Object.freeze(['payload', 'ttlMs', 'waitMs', 'signal', 'maxResultBytes', 'rememberErrors'])
/** BSON nests documents at most 100 deep; the record itself takes two. */
const MAX_DEPTH = 90

const STORABLE = 'plain objects, arrays, strings, numbers, bigints (64-bit), booleans, null, Dates and Buffers (or Uint8Arrays)'

const onceMessages = Object.freeze({
  fnNotFunction: (value) => `${PREFIX}: once(key, fn) needs fn, a function, got ${describe(value)}`,
  notStorable: (what, path, why) => `${PREFIX}: once() cannot store ${what}: ${path} ${why}; it stores ${STORABLE}`,
  tooLarge: (key, bytes, max) =>
    `${PREFIX}: once(${describe(key)}) ran, but its result takes ${bytes} bytes as BSON, over maxResultBytes (${max}); it was not stored, so the next call runs again`,
  inProgress: (key, waitMs) =>
    `${PREFIX}: once(${describe(key)}) is running elsewhere${waitMs ? ` and did not finish within waitMs (${waitMs} ms)` : ''}; try again later`,
  mismatch: (key) =>
    `${PREFIX}: once(${describe(key)}) ran before with a different payload; nothing ran. Use a new key for a different request`,
  failed: (key, name, message) => `${PREFIX}: once(${describe(key)}) ran before and failed (${name}: ${message}); rememberErrors keeps that failure until the record expires`,
  lost: (key) =>
    `${PREFIX}: once(${describe(key)}) ran, but its record was taken over before the outcome was stored (this run's lock was lost: the process was paused or cut off from the server past ttlMs); the outcome was not stored, and the run that took over is the one that counts`,
  rememberErrors: (value) => `${PREFIX}: options.rememberErrors must be true or false, got ${describe(value)}`,
  maxResultBytes: (value) => `${PREFIX}: options.maxResultBytes must be a whole number of bytes from 1 to ${MAX_RESULT_BYTES}, got ${describe(value)}`,
  optionsNotObject: (value) => `${PREFIX}: the options of once() must be an object, got ${describe(value)}`,
  unknownOption: (name) => `${PREFIX}: unknown option ${quote(name)} of once(); expected one of ${ONCE_OPTIONS.join(', ')}`,
  ms: (name, min, value) => `${PREFIX}: options.${name} must be a whole number of milliseconds from ${min} to ${MAX_MS}, got ${describe(value)}`,
})

// ------------------------------------------------------------ stored values

/** What `v` is, for a message. */
function kindOf(v) {
  if (typeof v === 'function') return 'is a function'
  if (typeof v === 'symbol') return 'is a Symbol'
  const name = v && v.constructor && typeof v.constructor.name === 'string' ? v.constructor.name : 'an object'
  return `is a ${name}`
}

/**
 * `value` as canonical extended JSON, the form the native side turns into
 * BSON (and the test locker keeps). Throws a TypeError naming the path of
 * anything it cannot store exactly. `undefined` in an object is left out, in
 * an array becomes null (as JSON and the mongodb driver do).
 */
function toStored(value, what, path = '', depth = 0, seen = new Set()) {
  const at = path || 'the value'
  if (value === null) return null
  switch (typeof value) {
    case 'string':
      if (value.includes('\0')) throw new TypeError(onceMessages.notStorable(what, at, 'contains a NUL character'))
      return value
    case 'boolean':
      return value
    case 'number':
      if (Number.isInteger(value) && value >= -(2 ** 31) && value < 2 ** 31 && !Object.is(value, -0)) return { $numberInt: String(value) }
      return { $numberDouble: Object.is(value, -0) ? '-0.0' : String(value) }
    case 'bigint':
      if (value < -(2n ** 63n) || value >= 2n ** 63n) throw new TypeError(onceMessages.notStorable(what, at, 'is a BigInt beyond 64 bits'))
      return { $numberLong: value.toString() }
    case 'object':
      break
    default:
      throw new TypeError(onceMessages.notStorable(what, at, kindOf(value)))
  }
  if (depth > MAX_DEPTH) throw new TypeError(onceMessages.notStorable(what, at, `nests deeper than ${MAX_DEPTH} levels`))
  if (value instanceof Date) {
    const ms = value.getTime()
    if (Number.isNaN(ms)) throw new TypeError(onceMessages.notStorable(what, at, 'is an invalid Date'))
    return { $date: { $numberLong: String(ms) } }
  }
  if (value instanceof Uint8Array) {
    return { $binary: { base64: Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64'), subType: '00' } }
  }
  if (seen.has(value)) throw new TypeError(onceMessages.notStorable(what, at, 'refers back to itself'))
  seen.add(value)
  try {
    if (Array.isArray(value)) {
      return value.map((item, i) => (item === undefined ? null : toStored(item, what, `${at}[${i}]`, depth + 1, seen)))
    }
    if (!isPlainObject(value)) throw new TypeError(onceMessages.notStorable(what, at, kindOf(value)))
    const out = {}
    for (const [name, item] of Object.entries(value)) {
      const inner = `${at}.${name}`
      // Extended JSON, the form outcomes travel in, reads a `$` name as a type.
      if (name.startsWith('$') || name.includes('\0')) {
        throw new TypeError(onceMessages.notStorable(what, inner, "has a field name that starts with '$' or contains a NUL character"))
      }
      if (item !== undefined) out[name] = toStored(item, what, inner, depth + 1, seen)
    }
    return out
  } finally {
    seen.delete(value)
  }
}

/** The value `toStored` wrote (as the server gives it back): Dates, Buffers and bigints as they were. */
function fromStored(tree) {
  if (tree === null || typeof tree !== 'object') return tree
  if (Array.isArray(tree)) return tree.map(fromStored)
  const keys = Object.keys(tree)
  if (keys.length === 1) {
    const v = tree[keys[0]]
    switch (keys[0]) {
      case '$numberInt':
      case '$numberDouble':
        return Number(v)
      case '$numberLong':
        return BigInt(v)
      case '$date':
        return new Date(typeof v === 'object' ? Number(v.$numberLong) : Date.parse(v))
      case '$binary':
        return Buffer.from(v.base64, 'base64')
    }
  }
  const out = {}
  for (const k of keys) out[k] = fromStored(tree[k])
  return out
}

const utf8 = (s) => Buffer.byteLength(s, 'utf8')

/** The size as BSON of a value `toStored` wrote (an element's value). */
function valueBytes(tree) {
  if (tree === null) return 0
  if (typeof tree === 'string') return 4 + utf8(tree) + 1
  if (typeof tree === 'boolean') return 1
  if (Array.isArray(tree)) return documentBytes(tree.map((v, i) => [String(i), v]))
  const keys = Object.keys(tree)
  if (keys.length === 1) {
    switch (keys[0]) {
      case '$numberInt':
        return 4
      case '$numberDouble':
      case '$numberLong':
      case '$date':
        return 8
      case '$binary':
        return 4 + 1 + Buffer.byteLength(tree.$binary.base64, 'base64')
    }
  }
  return documentBytes(Object.entries(tree))
}

/** The size as BSON of a document of `[name, stored value]` pairs. */
function documentBytes(entries) {
  let n = 4 + 1
  for (const [name, v] of entries) n += 1 + utf8(name) + 1 + valueBytes(v)
  return n
}

/** `tree` with every object's fields sorted: one text per value, whatever order its fields were written in. */
function canonical(tree) {
  if (tree === null || typeof tree !== 'object') return tree
  if (Array.isArray(tree)) return tree.map(canonical)
  const out = {}
  for (const k of Object.keys(tree).sort()) out[k] = canonical(tree[k])
  return out
}

/** The fingerprint of a payload: SHA-256 of its stored form with sorted fields (`undefined`: none). */
function fingerprint(payload) {
  if (payload === undefined) return undefined
  const text = JSON.stringify(canonical(toStored(payload, 'the payload', 'options.payload')))
  return createHash('sha256').update(text).digest('hex')
}

// ------------------------------------------------------------ options

function msOption(o, name, min, fallback) {
  const v = o[name]
  if (v === undefined) return fallback
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > MAX_MS) throw new TypeError(onceMessages.ms(name, min, v))
  return v
}

/** The checked options of a `once()` call, the payload's fingerprint made. */
function onceOptions(options) {
  if (options === undefined || options === null) options = {}
  if (typeof options !== 'object' || Array.isArray(options)) throw new TypeError(onceMessages.optionsNotObject(options))
  for (const name of Object.keys(options)) {
    if (!ONCE_OPTIONS.includes(name)) throw new TypeError(onceMessages.unknownOption(name))
  }
  const { rememberErrors = false, maxResultBytes = DEFAULT_MAX_RESULT_BYTES } = options
  if (typeof rememberErrors !== 'boolean') throw new TypeError(onceMessages.rememberErrors(rememberErrors))
  if (typeof maxResultBytes !== 'number' || !Number.isInteger(maxResultBytes) || maxResultBytes < 1 || maxResultBytes > MAX_RESULT_BYTES) {
    throw new TypeError(onceMessages.maxResultBytes(maxResultBytes))
  }
  return {
    payloadHash: fingerprint(options.payload),
    ttlMs: msOption(options, 'ttlMs', 1, DEFAULT_ONCE_TTL_MS),
    waitMs: msOption(options, 'waitMs', 0, undefined),
    signal: options.signal,
    maxResultBytes,
    rememberErrors,
  }
}

// ------------------------------------------------------------ the run

/** An Error-like failure as stored with `rememberErrors`: name, message and code. */
function failureOf(err) {
  const e = err !== null && typeof err === 'object' ? err : { message: String(err) }
  const out = { name: typeof e.name === 'string' ? e.name : 'Error', message: typeof e.message === 'string' ? e.message : String(err) }
  if (typeof e.code === 'string' || (typeof e.code === 'number' && Number.isFinite(e.code))) out.code = e.code
  return out
}

const abortedOf = Object.getOwnPropertyDescriptor(AbortSignal.prototype, 'aborted').get
const reasonOf = Object.getOwnPropertyDescriptor(AbortSignal.prototype, 'reason').get

/**
 * The `signal` a run's `fn` gets: it aborts with the run's lock, and it is
 * exact when read, as `lock.locked` is. A process paused past the ttl finds
 * its lock's deadline passed at its first read of `locked`, but the lock's
 * own signal aborts only once the event loop gets to it; `fn` has only this
 * signal, so reading `aborted`, `reason` or `throwIfAborted()` asks `locked`
 * first while the run goes on. `running()` says whether it does.
 */
function runSignal(lock, running) {
  const controller = new AbortController()
  const signal = controller.signal
  const follow = () => controller.abort(reasonOf.call(lock.signal))
  if (lock.signal.aborted) follow()
  else lock.signal.addEventListener('abort', follow, { once: true })
  const check = () => {
    if (running() && !abortedOf.call(signal) && !lock.locked) {
      // The lock's signal aborts a moment later, with this reason.
      controller.abort(lock.signal.aborted ? reasonOf.call(lock.signal) : new LockLostError(messages.lost(keyText(lock.action), LOSS.expired)))
    }
  }
  return Object.defineProperties(signal, {
    aborted: { get: () => (check(), abortedOf.call(signal)), configurable: true },
    reason: { get: () => (check(), reasonOf.call(signal)), configurable: true },
    throwIfAborted: { value: () => (check(), AbortSignal.prototype.throwIfAborted.call(signal)), configurable: true, writable: true },
  })
}

/** What a finished record gives a later call: the stored result, or the typed error. */
function replay(key, record) {
  if (!record.matches) throw new OnceMismatchError(onceMessages.mismatch(key), { key })
  const stored = fromStored(JSON.parse(record.stored))
  if (record.state === 'failed') {
    const cause = new Error(stored.message)
    cause.name = stored.name
    if (stored.code !== undefined) cause.code = stored.code
    throw new OnceFailedError(onceMessages.failed(key, stored.name, stored.message), { key, cause })
  }
  return stored.value
}

/**
 * Runs `fn({ signal, fencingToken })` once per `key` (see docs/once.md)
 * over `backend`: `begin(key, payloadHash,
 * { waitMs, signal })` resolves to a held lock on the key's record (this
 * call runs), a finished record, or `null` (running elsewhere);
 * `complete(lock, failed, stored, payloadHash, bytes, ttlMs)` stores the
 * outcome and resolves `false` if the record was taken over meanwhile.
 */
async function runOnce(backend, key, fn, options) {
  if (typeof fn !== 'function') throw new TypeError(onceMessages.fnNotFunction(fn))
  const o = onceOptions(options)
  const native = {}
  if (o.waitMs !== undefined) native.waitMs = o.waitMs
  if (o.signal !== undefined) native.signal = o.signal
  const begun = await backend.begin(key, o.payloadHash, native)
  if (begun === null) throw new OnceInProgressError(onceMessages.inProgress(key, o.waitMs), { key, waitMs: o.waitMs ?? 0 })
  if (typeof begun.free !== 'function') return replay(key, begun)
  const lock = begun
  let value
  let running = true
  try {
    value = await fn({ signal: runSignal(lock, () => running), fencingToken: lock.fencingToken })
  } catch (err) {
    running = false
    let failure
    try {
      failure = o.rememberErrors ? toStored(failureOf(err), 'the failure', 'the failure') : undefined
    } catch {
      failure = undefined
    }
    // Remembered, or nothing is kept and the next call runs again. Either
    // way the caller gets its own error, not how storing it went.
    if (failure) await finish(backend, key, lock, true, failure, o).catch(() => {})
    else await lock.free().catch(() => {})
    throw err
  }
  running = false
  let stored
  try {
    stored = value === undefined ? {} : { value: toStored(value, 'the result', 'the result') }
  } catch (err) {
    await lock.free().catch(() => {})
    throw err
  }
  const bytes = documentBytes(Object.entries(stored))
  if (bytes > o.maxResultBytes) {
    await lock.free().catch(() => {})
    throw new RangeError(onceMessages.tooLarge(key, bytes, o.maxResultBytes))
  }
  await finish(backend, key, lock, false, stored, o, value)
  return value
}

/** Stores the outcome; the lock's record was taken over meanwhile: LockLostError (with the result, if any). */
async function finish(backend, key, lock, failed, stored, o, value) {
  let kept
  try {
    kept = await backend.complete(lock, failed, JSON.stringify(stored), o.payloadHash, documentBytes(Object.entries(stored)), o.ttlMs)
  } catch (err) {
    // The answer is unknown: the outcome may be stored. The record is not
    // deleted (that could remove a completed one); it stops being
    // refreshed, and a later call either replays it or, once it expires
    // unfinished, runs again.
    lock.locked = false
    throw err
  }
  if (!kept) {
    const err = new LockLostError(onceMessages.lost(key))
    if (!failed) err.result = value
    throw err
  }
}

/** What `inspectOnce(key)` shows of a record (both lockers): its state, who runs or ran it, its times as Dates. */
function recordView(record) {
  if (!record) return null
  const date = (ms) => (ms === undefined || ms === null ? null : new Date(ms))
  const now = record.serverTimeMs ?? null
  return {
    state: record.state,
    holder: record.holder ?? null,
    fencingToken: record.fencingToken ?? null,
    createdAt: date(record.createdAtMs),
    completedAt: date(record.completedAtMs),
    expiresAt: date(record.expiresAtMs),
    ageMs: now !== null && record.createdAtMs != null ? now - record.createdAtMs : null,
    expiresInMs: now !== null && record.expiresAtMs != null ? record.expiresAtMs - now : null,
    resultBytes: record.resultBytes ?? null,
    payloadHash: record.payloadHash ?? null,
  }
}

module.exports = {
  recordView,
  DEFAULT_ONCE_TTL_MS,
  DEFAULT_MAX_RESULT_BYTES,
  MAX_RESULT_BYTES,
  ONCE_OPTIONS,
  onceMessages,
  toStored,
  fromStored,
  documentBytes,
  fingerprint,
  onceOptions,
  runOnce,
}
