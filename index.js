'use strict'
// The JavaScript face of the native module: the MongoLocksError class, the
// disposal symbols on Lock, and the exports. Everything else is in Rust.

const native = require('./binding.js')

/** A server or driver failure; `code` is the server's error code where there is one. */
class MongoLocksError extends Error {
  constructor(message, code) {
    super(message)
    this.name = 'MongoLocksError'
    if (code !== undefined && code !== null) this.code = code
  }
}
native.registerErrorClass(MongoLocksError)

const { LockManager, Lock, acquireLock, requireLock } = native

Lock.prototype[Symbol.asyncDispose] = function asyncDispose() {
  return this.free()
}
// `using` cannot wait: start the release and keep a failure from becoming an
// unhandled rejection (the lock then expires after its ttl).
Lock.prototype[Symbol.dispose] = function dispose() {
  this.free().catch(() => {})
}

module.exports = { LockManager, Lock, MongoLocksError, acquireLock, requireLock }
