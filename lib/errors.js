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

/** The errors of `locker.once()`: `code` says which, and the call's `key` and details are fields. */
class OnceError extends Error {
  constructor(name, code, message, fields) {
    super(message, fields && fields.cause !== undefined ? { cause: fields.cause } : undefined)
    this.name = name
    this.code = code
    Object.assign(this, fields)
  }
}

/**
 * `locker.once(key, fn)` met a run of `key` still going after `waitMs`: try
 * again later (an HTTP API answers 409). `key` and `waitMs` are on the error.
 */
class OnceInProgressError extends OnceError {
  constructor(message, fields) {
    super('OnceInProgressError', 'ONCE_IN_PROGRESS', message, fields)
  }
}

/**
 * `locker.once(key, fn, { payload })` met a record of `key` stored for a
 * different payload: nothing ran (an HTTP API answers 422).
 */
class OnceMismatchError extends OnceError {
  constructor(message, fields) {
    super('OnceMismatchError', 'ONCE_PAYLOAD_MISMATCH', message, fields)
  }
}

/**
 * The run of `key` failed before and `rememberErrors` kept that failure:
 * its name, message and code are on `cause`; nothing ran again.
 */
class OnceFailedError extends OnceError {
  constructor(message, fields) {
    super('OnceFailedError', 'ONCE_FAILED', message, fields)
  }
}

module.exports = { MongoLocksError, LockLostError, OnceInProgressError, OnceMismatchError, OnceFailedError }
