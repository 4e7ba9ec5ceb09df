'use strict'
// The rules the real manager and the test locker must agree on, written once:
// limits, defaults, error messages and the shapes of the lock documents.
// Plain JavaScript with no requires, so the test locker (testing.js) and the
// CLI load it where the native addon cannot. Where the Rust core owns a rule
// (it checks it, or writes it), this is the JavaScript copy, and
// __test__/server/conformance.test.mjs ("the rules the Rust core owns") fails when
// the two differ, message text included; the Rust file is named beside each.

const PREFIX = 'mongo-locks-native'

// ---------------------------------------------------------------- defaults and limits

/** How long a lock lives after its last refresh, in ms, as mongo-locks (src/config.rs DEFAULT_TTL_MS). */
const DEFAULT_TTL_MS = 60_000
/** How often a held lock is refreshed, in ms, when neither ttlMs nor refreshMs is set (src/config.rs DEFAULT_REFRESH_MS). */
const DEFAULT_REFRESH_MS = 10_000

/** refreshMs when it is not set: a sixth of ttlMs (at least 1 ms, at most the default) when ttlMs is set (src/config.rs Config::build). */
function defaultRefreshMs(ttlMs) {
  if (ttlMs === undefined) return DEFAULT_REFRESH_MS
  return Math.min(Math.max(1, Math.floor(ttlMs / 6)), DEFAULT_REFRESH_MS)
}

/** The longest duration option: what a JS timer takes (src/config.rs checked_ms). */
const MAX_MS = 2 ** 31 - 1
/** The largest key, as the BSON of `{ action: key }` (src/key.rs MAX_KEY_BYTES). */
const MAX_KEY_BYTES = 1024
/** How deep arrays and objects in a key may nest (src/key.rs MAX_DEPTH). */
const MAX_KEY_DEPTH = 16
/** The most permits of a semaphore and readers of a read/write lock (src/semaphore.rs MAX_LIMIT): each attempt reads them all. */
const MAX_SLOTS = 1000
/** A read/write lock's readers when `maxReaders` is not given. */
const DEFAULT_MAX_READERS = 64

/** The options of `lock(key, options)`, in the order messages list them (src/config.rs LOCK_OPTIONS). */
const LOCK_OPTIONS = Object.freeze(['waitMs', 'signal', 'onLost', 'maxHoldMs', 'fencing', 'minHoldMs'])
/** The names `locker.ready` resolves to: the collection's indexes (src/store.rs). */
const INDEX_NAMES = Object.freeze(['action_1', 'expiresAt_1'])

/** Histogram bucket bounds in seconds: acquire, wait and refresh latency (src/stats.rs LATENCY_BOUNDS). */
const LATENCY_BOUNDS = Object.freeze([0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30])
/** …and how long locks are held (src/stats.rs HOLD_BOUNDS). */
const HOLD_BOUNDS = Object.freeze([0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600])

/** Why a held lock was lost, as a LockLostError words it (src/lock.rs Loss::reason). */
const LOSS = Object.freeze({
  gone: 'its document is gone (deleted, or taken over after it expired)',
  expired: 'its expiry passed without a successful refresh',
})

// ---------------------------------------------------------------- values in messages (src/values.rs)

/** A string as Rust's `{:?}` writes it, the one form messages give strings in: `"a\0b"`, `"tab\there"`, `"\u{7f}"`. */
function quote(text) {
  // napi hands Rust the string as UTF-8: a lone surrogate arrives as U+FFFD.
  let out = '"'
  for (const ch of String(text).toWellFormed()) {
    const escaped = { '\0': '\\0', '\t': '\\t', '\r': '\\r', '\n': '\\n', '\\': '\\\\', '"': '\\"' }[ch]
    if (escaped !== undefined) out += escaped
    else if (/\p{Grapheme_Extend}/u.test(ch) || (ch !== ' ' && /[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Cn}\p{Zl}\p{Zp}\p{Zs}]/u.test(ch))) {
      out += `\\u{${ch.codePointAt(0).toString(16)}}`
    } else out += ch
  }
  return `${out}"`
}

/** A number as Rust prints an f64: `NaN`, `inf`, `-inf`, else as JavaScript does. */
function rustNumber(n) {
  if (Number.isNaN(n)) return 'NaN'
  if (n === Infinity) return 'inf'
  if (n === -Infinity) return '-inf'
  return String(n)
}

function safeString(value) {
  try {
    return String(value)
  } catch {
    return '<value>'
  }
}

/** A value as error messages show it: `undefined`, `"text"`, `42`, `{"a":1}`, `[function f]`, at most 80 characters. */
function describe(value) {
  let text
  if (value === undefined) text = 'undefined'
  else if (value === null) text = 'null'
  else if (typeof value === 'string') text = quote(value)
  else if (typeof value === 'function') text = value.name ? `[function ${value.name}]` : '[function]'
  else if (typeof value === 'symbol') text = 'a Symbol'
  else if (typeof value === 'bigint') text = 'a BigInt'
  else if (typeof value === 'object') {
    // JSON when it has one (plain objects, arrays), else its tag.
    let json
    try {
      json = JSON.stringify(value)
    } catch {
      json = undefined
    }
    const tag = safeString(value)
    text = typeof json === 'string' && (tag === '[object Object]' || Array.isArray(value)) ? json : tag
  } else text = String(value)
  return [...text].length > 80 ? `${[...text].slice(0, 80).join('')}…` : text
}

// ---------------------------------------------------------------- messages

const KEY_EXPECTED = 'a non-empty string, a finite number, an array or a plain object'

const messages = Object.freeze({
  /** A key lock() refuses, and why (src/key.rs action_from_js). */
  invalidKey: (key, why) => `${PREFIX}: invalid lock key ${describe(key)}: ${why}; expected ${KEY_EXPECTED}`,
  /** The reasons a key is refused (src/key.rs). */
  keyWhy: Object.freeze({
    missing: 'a lock needs a key',
    function: 'functions are not keys',
    symbol: 'symbols cannot be stored',
    otherType: 'this type cannot be stored as a key',
    notPlain: 'objects other than plain { … } objects are not accepted',
    emptyString: 'the empty string is not a key',
    notFinite: (n) => `${rustNumber(n)} is not a finite number`,
    nested: (kind) => `a nested ${kind} cannot be stored`,
    nestedNotPlain: (value) => `nested ${describe(value)} is not a plain object`,
    tooDeep: `nested deeper than ${MAX_KEY_DEPTH} levels (or cyclic)`,
    dollarField: (name) => `field name ${quote(name)} starts with '$', which MongoDB reads as an operator`,
    nulField: (name) => `field name ${quote(name)} contains a NUL character`,
    nulString: 'a key string cannot contain a NUL character',
    tooLarge: (size) => `it takes ${size} bytes as BSON, over the ${MAX_KEY_BYTES}-byte bound`,
  }),
  /** Options that are not an options object (src/config.rs options_object). */
  optionsNotObject: (value) => `${PREFIX}: options must be an object, got ${describe(value)}`,
  /** An option name not in `allowed`; `kind` is `option` or `lock option` (src/config.rs each_option). */
  unknownOption: (kind, name, allowed) => `${PREFIX}: unknown ${kind} ${quote(name)}; expected one of ${allowed.join(', ')}`,
  /** A duration option out of range (src/config.rs ms_option). */
  msOption: (name, min, value) => `${PREFIX}: options.${name} must be a whole number of milliseconds from ${min} to ${MAX_MS}, got ${describe(value)}`,
  /** A string option that is not a non-empty string: appName (src/config.rs string_option). */
  stringOption: (name, value) => `${PREFIX}: options.${name} must be a non-empty string, got ${describe(value)}`,
  /** refreshMs not below ttlMs, either given or defaulted (src/config.rs Config::build). */
  refreshNotBelowTtl: (refreshMs, ttlMs) =>
    `${PREFIX}: options.refreshMs (${refreshMs}) must be less than options.ttlMs (${ttlMs}), or locks would expire between refreshes`,
  fencingNotBoolean: (value) => `${PREFIX}: options.fencing must be true or false, got ${describe(value)}`,
  onLostNotFunction: (value) => `${PREFIX}: options.onLost must be a function, got ${describe(value)}`,
  /** (src/signals.rs) */
  signalNotSignal: (value) => `${PREFIX}: options.signal must be an AbortSignal, got ${describe(value)}`,
  /** A count of permits or readers out of range (src/manager.rs count; primitives.js checks it first). */
  count: (name, value) =>
    `${PREFIX}: ${name} must be a whole number from 1 to ${MAX_SLOTS}, got ${typeof value === 'string' ? JSON.stringify(value) : String(value)}`,
  /** fencing on a shared slot (src/manager.rs). */
  fencingShared: (what) => `${PREFIX}: options.fencing is for exclusive locks (lock(), write()); ${what} is shared, so tokens would not order its holders`,
  /** (src/manager.rs sorted_actions) */
  lockAllKeys: (value) => `${PREFIX}: lockAll(keys) needs a non-empty array of keys, got ${describe(value)}`,
  lockAllTwice: (shown) => `${PREFIX}: lockAll(keys) got the key ${shown} twice; each key can be locked once`,
  /** The reason of a LockLostError; `keyText` a string key as is, another key in its stored form (src/signals.rs). */
  lost: (keyText, why) => `${PREFIX}: lost the lock on ${quote(keyText)}: ${why}`,
  /** (src/errors.rs LockError::Closed) */
  closed: `${PREFIX}: this LockManager is closed`,
})

// ---------------------------------------------------------------- document shapes

/** A key as mongo-locks stores it: arrays inside `{ _key_array }` (a unique index reads each array element apart). */
const wrapArray = (key) => (Array.isArray(key) ? { _key_array: key } : key)

/**
 * The slots of the primitives, each a lock document whose action is an
 * object key: `tag` holds the primitive's stored key, `field` the slot
 * (src/semaphore.rs, src/rwlock.rs). `queue` is a semaphore waiter's place in
 * line. Fields in the order the library writes them.
 */
const SLOTS = Object.freeze({
  permit: Object.freeze({ kind: 'semaphore', tag: '_semaphore', field: 'permit' }),
  queue: Object.freeze({ kind: 'semaphore', tag: '_semaphore', field: 'queue' }),
  writer: Object.freeze({ kind: 'rwlock', tag: '_rwlock', field: 'writer' }),
  reader: Object.freeze({ kind: 'rwlock', tag: '_rwlock', field: 'reader' }),
})

/** The action of a slot: `slotAction('permit', action, 2)` is `{ _semaphore: action, permit: 2 }`; a writer's value is `true`. */
function slotAction(slot, action, value = true) {
  const { tag, field } = SLOTS[slot]
  return { [tag]: action, [field]: value }
}

module.exports = {
  PREFIX,
  DEFAULT_TTL_MS,
  DEFAULT_REFRESH_MS,
  defaultRefreshMs,
  MAX_MS,
  MAX_KEY_BYTES,
  MAX_KEY_DEPTH,
  MAX_SLOTS,
  DEFAULT_MAX_READERS,
  LOCK_OPTIONS,
  INDEX_NAMES,
  LATENCY_BOUNDS,
  HOLD_BOUNDS,
  LOSS,
  quote,
  rustNumber,
  describe,
  messages,
  wrapArray,
  SLOTS,
  slotAction,
}
