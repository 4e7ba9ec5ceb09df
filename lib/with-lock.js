'use strict'
// `locker.withLock(key, fn, options)`, in plain JavaScript: shared by the real
// manager (manager.js) and the test locker (testing.js), which must load
// without the native addon.

/**
 * Runs `fn(lock, lock.signal)` while holding the lock on `key`, and frees
 * it afterwards. Rejects like requireLock when the lock cannot be had. An
 * error of `fn` is kept, never masked by a failure to free; a failure to
 * free after `fn` succeeded does not turn that success into an error (the
 * lock then expires after its ttl).
 */
async function withLock(locker, key, fn, options) {
  if (typeof fn !== 'function') {
    throw new TypeError(`mongo-locks-native: withLock(key, fn) needs a function, got ${typeof fn}`)
  }
  const lock = await locker.lock(key, options)
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

module.exports = { withLock }
