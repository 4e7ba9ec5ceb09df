'use strict'
// Beyond one holder: semaphores, read/write locks and leader election, each a
// thin JavaScript face over the Rust core. The core takes the same lock
// documents for all of them (a permit, a reader slot and a writer document
// are locks with object keys), so they inherit the refresh, takeover, server
// clock, lost signals and the guarantees of `lock()`. See the README's
// "Semaphores, read/write locks, leader election".

const { setTimeout: sleep } = require('node:timers/promises')

// The most permits (and readers) one key can have, and its message: rules.js.
const { MAX_SLOTS, DEFAULT_MAX_READERS, messages } = require('./rules.js')

function checkCount(name, value, fallback) {
  if (value === undefined && fallback !== undefined) return fallback
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > MAX_SLOTS) {
    throw new TypeError(messages.count(name, value))
  }
  return value
}

function checkOptions(value, allowed, what) {
  if (value === undefined || value === null) return {}
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw new TypeError(`mongo-locks-native: the options of ${what} must be an object, got ${Array.isArray(value) ? 'an array' : typeof value}`)
  }
  for (const name of Object.keys(value)) {
    if (!allowed.includes(name)) throw new TypeError(`mongo-locks-native: unknown option ${name} of ${what}; expected ${allowed.join(', ')}`)
  }
  return value
}

/**
 * At most `limit` holders of `key` across every process. Permits are locks:
 * `free()`, `signal`, `locked`, `await using`.
 */
class Semaphore {
  #acquire
  /** Made by `locker.semaphore(key, { limit })`; `acquire` is the manager's native permit call. */
  constructor(acquire, key, options) {
    const { limit } = checkOptions(options, ['limit'], `semaphore(${String(key)})`)
    if (limit === undefined) throw new TypeError('mongo-locks-native: semaphore(key, { limit }) needs limit, the number of permits')
    this.#acquire = acquire
    this.key = key
    this.limit = checkCount('limit', limit)
  }

  /** A permit, or `null` when all `limit` are held (after `options.waitMs`). Options as `lock()`'s, without `fencing`. */
  acquire(options) {
    return this.#acquire(this.key, this.limit, options)
  }
}

/** Many readers or one writer, never both; a waiting writer keeps new readers out. */
class ReadWriteLock {
  #acquire
  /** Made by `locker.readWriteLock(key)`; `acquire` is the manager's native read/write call. */
  constructor(acquire, key, options) {
    const { maxReaders } = checkOptions(options, ['maxReaders'], `readWriteLock(${String(key)})`)
    this.#acquire = acquire
    this.key = key
    this.maxReaders = checkCount('maxReaders', maxReaders, DEFAULT_MAX_READERS)
  }

  /** A read lock (shared with other readers), or `null` after `options.waitMs`. */
  read(options) {
    return this.#acquire(this.key, this.maxReaders, false, options)
  }

  /** The write lock (alone), or `null` after `options.waitMs`. `fencing: true` works as on `lock()`. */
  write(options) {
    return this.#acquire(this.key, this.maxReaders, true, options)
  }
}

/** How long one campaign call waits before it asks again (it loops until stopped). */
const CAMPAIGN_WAIT_MS = 60_000
/** After `resign()`, the wait before campaigning again, so another process can take over. */
const RESIGN_PAUSE_MS = 1000

/**
 * Campaigns for leadership of `key` until stopped: calls `onElected(signal)`
 * when this process becomes leader (`signal` aborts when it stops being
 * leader) and `onDemoted(reason)` when it stops: `'lost'` (the lock was lost:
 * the server was unreachable for a ttl, or the process was paused),
 * `'resigned'`, or `'stopped'`.
 */
class Election {
  #locker
  #onElected
  #onDemoted
  #onError
  #stopped = false
  #stopping = new AbortController()
  /** The current term: `{ lock, controller, stepDown(reason) }`, while leader. */
  #term = null
  #campaign = null
  #resignedAt = 0

  constructor(locker, key, options) {
    const o = checkOptions(options, ['onElected', 'onDemoted', 'onError'], `elect(${String(key)})`)
    for (const name of ['onElected', 'onDemoted', 'onError']) {
      if (o[name] !== undefined && typeof o[name] !== 'function') {
        throw new TypeError(`mongo-locks-native: elect() option ${name} must be a function, got ${typeof o[name]}`)
      }
    }
    this.#locker = locker
    this.key = key
    this.#onElected = o.onElected
    this.#onDemoted = o.onDemoted
    this.#onError = o.onError || ((err) => console.error(`mongo-locks-native: election ${String(key)}:`, err))
  }

  /** Starts campaigning (`locker.elect()` does); returns this election. */
  start() {
    if (!this.#campaign && !this.#stopped) this.#campaign = this.#run()
    return this
  }

  /** Whether this process leads now (false as soon as the lock is lost). */
  get isLeader() {
    return this.#term !== null && this.#term.lock.locked
  }

  /** Who leads now, from the lock document (`holder`: host, pid, app, manager), or `null`. */
  async leader() {
    const found = await this.#locker.inspect(this.key)
    return found && { ...found.holder, since: found.createdAt, expiresAt: found.expiresAt }
  }

  /** Steps down if leader (the lock is freed), then campaigns again after a pause. */
  async resign() {
    const term = this.#term
    if (!term) return
    this.#resignedAt = Date.now()
    await term.stepDown('resigned')
  }

  /** Stops campaigning and steps down if leader. Resolves when done. */
  async stop() {
    this.#stopped = true
    this.#stopping.abort()
    if (this.#term) await this.#term.stepDown('stopped')
    await this.#campaign
  }

  async [Symbol.asyncDispose]() {
    await this.stop()
  }

  #report(err) {
    try {
      this.#onError(err)
    } catch {
      // a throwing onError must not stop the campaign
    }
  }

  async #run() {
    while (!this.#stopped) {
      const pause = this.#resignedAt + RESIGN_PAUSE_MS - Date.now()
      if (pause > 0) await sleep(pause, undefined, { signal: this.#stopping.signal }).catch(() => {})
      if (this.#stopped) break
      let lock
      try {
        lock = await this.#locker.lock(this.key, { waitMs: CAMPAIGN_WAIT_MS, signal: this.#stopping.signal })
      } catch (err) {
        if (this.#stopped) break
        if (err && err.closed === true) break // the manager was closed: nothing left to campaign with
        this.#report(err) // the server is unreachable: keep campaigning
        await sleep(1000, undefined, { signal: this.#stopping.signal }).catch(() => {})
        continue
      }
      if (!lock) continue
      if (this.#stopped) {
        await lock.free().catch((err) => this.#report(err))
        break
      }
      await this.#lead(lock)
    }
  }

  /** One term: from election to demotion. */
  async #lead(lock) {
    if (lock.signal.aborted) return // lost before lock() resolved: not elected after all
    const controller = new AbortController()
    let stepDown
    const demoted = new Promise((resolve) => {
      stepDown = resolve
    })
    let done
    const term = {
      lock,
      controller,
      stepDown: (reason) => {
        stepDown(reason)
        return done
      },
    }
    done = (async () => {
      const onLost = () => stepDown('lost')
      lock.signal.addEventListener('abort', onLost, { once: true })
      this.#term = term
      if (this.#onElected) {
        Promise.resolve()
          .then(() => this.#onElected(controller.signal))
          .catch((err) => this.#report(err))
      }
      const reason = await demoted
      lock.signal.removeEventListener('abort', onLost)
      this.#term = null
      controller.abort(new Error(`mongo-locks-native: no longer leader of ${String(this.key)} (${reason})`))
      if (reason !== 'lost') await lock.free().catch((err) => this.#report(err))
      if (this.#onDemoted) {
        await Promise.resolve()
          .then(() => this.#onDemoted(reason))
          .catch((err) => this.#report(err))
      }
    })()
    await done
  }
}

/**
 * A job started on every instance at the same wall-clock instants (multiples
 * of `everyMs`, as a cron would) and run by one of them per interval: each
 * tick takes the lock `job:<name>` with `minHoldMs`, so the instance that got
 * it keeps the others out for the rest of the interval even if the job ends
 * at once (ShedLock's "lock at least for"). `fn(signal)` gets the lock's
 * signal, aborted if the lock is lost while it runs.
 */
class ScheduledJob {
  #locker
  #fn
  #onError
  #timer = null
  #running = null
  #stopped = false

  constructor(locker, name, options, fn) {
    if (typeof name !== 'string' || name === '') throw new TypeError(`mongo-locks-native: schedule(name, …) needs a non-empty string name, got ${typeof name}`)
    const o = checkOptions(options, ['everyMs', 'minHoldMs', 'onError'], `schedule(${name})`)
    if (!Number.isInteger(o.everyMs) || o.everyMs < 100 || o.everyMs > 2 ** 31 - 1) {
      throw new TypeError(`mongo-locks-native: schedule() option everyMs must be a whole number of milliseconds from 100 to 2147483647, got ${String(o.everyMs)}`)
    }
    const minHoldMs = o.minHoldMs === undefined ? Math.floor(o.everyMs * 0.9) : o.minHoldMs
    if (!Number.isInteger(minHoldMs) || minHoldMs < 1 || minHoldMs >= o.everyMs) {
      throw new TypeError(`mongo-locks-native: schedule() option minHoldMs must be a whole number of milliseconds from 1 to everyMs - 1 (${o.everyMs - 1}), got ${String(o.minHoldMs)}`)
    }
    if (typeof fn !== 'function') throw new TypeError(`mongo-locks-native: schedule(name, options, fn) needs a function, got ${typeof fn}`)
    if (o.onError !== undefined && typeof o.onError !== 'function') throw new TypeError('mongo-locks-native: schedule() option onError must be a function')
    this.#locker = locker
    this.#fn = fn
    this.#onError = o.onError || ((err) => console.error(`mongo-locks-native: job ${name}:`, err))
    this.name = name
    this.everyMs = o.everyMs
    this.minHoldMs = minHoldMs
    /** How many times this instance ran the job. */
    this.runs = 0
  }

  /** Starts the schedule (`locker.schedule()` does); returns this job. */
  start() {
    if (this.#timer === null && !this.#stopped) this.#arm()
    return this
  }

  #arm() {
    if (this.#stopped) return
    this.#timer = setTimeout(() => {
      this.#running = this.#tick().finally(() => {
        this.#running = null
        this.#arm()
      })
    }, this.everyMs - (Date.now() % this.everyMs))
  }

  async #tick() {
    let lock
    try {
      lock = await this.#locker.lock(`job:${this.name}`, { minHoldMs: this.minHoldMs })
    } catch (err) {
      this.#report(err)
      return
    }
    if (!lock) return // another instance runs it this interval
    try {
      this.runs++
      await this.#fn(lock.signal)
    } catch (err) {
      this.#report(err)
    } finally {
      await lock.free().catch((err) => this.#report(err))
    }
  }

  #report(err) {
    try {
      this.#onError(err)
    } catch {
      // a throwing onError must not stop the schedule
    }
  }

  /** Stops the schedule; resolves when a run in progress has finished. */
  async stop() {
    this.#stopped = true
    clearTimeout(this.#timer)
    await this.#running
  }
}

module.exports = { Semaphore, ReadWriteLock, Election, ScheduledJob }
