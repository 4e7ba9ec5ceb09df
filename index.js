'use strict'
// The JavaScript face of the native module: the error classes, the disposal
// symbols on Lock, withLock (it runs a JS callback), and the exports.
// Everything else is in Rust.

const native = require('./binding.js')

/** A server or driver failure; `code` is the server's error code where there is one. */
class MongoLocksError extends Error {
  constructor(message, code) {
    super(message)
    this.name = 'MongoLocksError'
    if (code !== undefined && code !== null) this.code = code
  }
}
/** A lock this process held is gone: the reason `lock.signal` aborts with. */
class LockLostError extends Error {
  constructor(message) {
    super(message)
    this.name = 'LockLostError'
  }
}
native.registerErrorClasses(MongoLocksError, LockLostError)

const { LockManager, Lock, acquireLock, requireLock } = native

/**
 * Runs `fn(lock, lock.signal)` while holding the lock on `key`, and frees
 * it afterwards. Rejects like requireLock when the lock cannot be had. An
 * error of `fn` is kept, never masked by a failure to free; a failure to
 * free after `fn` succeeded does not turn that success into an error (the
 * lock then expires after its ttl).
 */
LockManager.prototype.withLock = async function withLock(key, fn, options) {
  if (typeof fn !== 'function') {
    throw new TypeError(`mongo-locks-native: withLock(key, fn) needs a function, got ${typeof fn}`)
  }
  const lock = await this.lock(key, options)
  if (!lock) throw new Error(`Failed to acquire lock for ${String(key)}`)
  let result
  try {
    result = await fn(lock, lock.signal)
  } catch (err) {
    await lock.free().catch(() => {})
    throw err
  }
  await lock.free().catch(() => {})
  return result
}

Lock.prototype[Symbol.asyncDispose] = function asyncDispose() {
  return this.free()
}
// `using` cannot wait: start the release and keep a failure from becoming an
// unhandled rejection (the lock then expires after its ttl).
Lock.prototype[Symbol.dispose] = function dispose() {
  this.free().catch(() => {})
}

// The Hapi plugin, also at `mongo-locks-native/hapi` (hapi.js requires this
// file lazily, so either can be loaded first).
const { plugin: hapiPlugin } = require('./hapi.js')

module.exports = {
  LockManager,
  Lock,
  MongoLocksError,
  LockLostError,
  acquireLock,
  requireLock,
  hapiPlugin,
  __napiBindingTarget: native.__napiBindingTarget,
}
