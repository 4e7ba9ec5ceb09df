'use strict'
// The package's main entry, `mongo-locks-native`: what it exports, gathered
// from lib/ (the manager, the primitives, the errors, the Hapi plugin). No
// module of lib/ requires this file, so none of them can see it
// half-initialised.

const { LockManager, NativeLock, acquireLock, requireLock, native } = require('./lib/manager.js')
const { MongoLocksError, LockLostError, OnceInProgressError, OnceMismatchError, OnceFailedError } = require('./lib/errors.js')
const { Semaphore, ReadWriteLock, Election, ScheduledJob } = require('./lib/primitives.js')
const { CONTENT_TYPE: METRICS_CONTENT_TYPE } = require('./lib/metrics.js')
// The Hapi plugin, also at `mongo-locks-native/hapi`.
const { plugin: hapiPlugin } = require('./lib/hapi.js')

// Shorthand or `name: identifier` only: Node's CommonJS lexer, which gives ESM
// importers their named exports, stops at anything else.
module.exports = {
  METRICS_CONTENT_TYPE,
  LockManager,
  Lock: NativeLock,
  NativeLock,
  MongoLocksError,
  LockLostError,
  OnceInProgressError,
  OnceMismatchError,
  OnceFailedError,
  Semaphore,
  ReadWriteLock,
  Election,
  ScheduledJob,
  acquireLock,
  requireLock,
  hapiPlugin,
  __napiBindingTarget: native.__napiBindingTarget,
}
