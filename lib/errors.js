'use strict'
// The package's error classes, in plain JavaScript so that a module that must
// load without the native addon (testing.js) throws the very same classes as
// the real manager (manager.js): `err instanceof LockLostError` holds whichever locker made `err`.

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

module.exports = { MongoLocksError, LockLostError }
