// What only the test locker has: its clock under the test's control (vitest's
// fake timers, or advance()), the record of what happened (history, heldKeys),
// simulated failures (expire, takeOver, expireOnce) and assertNoneHeld, and
// once() driven through them, down to an application's own test with the
// test locker as `server.locker`. The behaviour it shares with the real
// manager is in conformance.test.mjs. The last block is the package as npm
// packs it: the test locker loads with no binary at all.
import { describe, it, expect, vi, afterEach, beforeAll, afterAll, onTestFinished } from 'vitest'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, readdirSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const require = createRequire(import.meta.url)
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
const {
  createTestLocker, LockLostError, MongoLocksError, OnceInProgressError, OnceMismatchError, OnceFailedError,
} = require('../../lib/testing.js')

describe('the test locker on fake timers', () => {
  afterEach(() => { vi.useRealTimers() })

  it('expires a lock at maxHoldMs + ttl as the fake clock passes it, not before', async () => {
    vi.useFakeTimers()
    const locker = createTestLocker() // ttlMs 60000, refreshMs 10000, as the real manager
    const onLost = vi.fn()
    const lock = await locker.lock('report', { maxHoldMs: 5000, onLost })
    await vi.advanceTimersByTimeAsync(59_999)
    expect(lock.locked).toBe(true)
    await vi.advanceTimersByTimeAsync(1)
    expect(lock.locked).toBe(false)
    expect(lock.signal.reason).toBeInstanceOf(LockLostError)
    expect(onLost).toHaveBeenCalledWith(lock.signal.reason)
    expect(locker.history.map((e) => e.type)).toEqual(['acquired', 'expired'])
  })

  it('a wait runs out when the fake clock passes waitMs; a free hands the key over at once', async () => {
    vi.useFakeTimers()
    const locker = createTestLocker()
    const held = await locker.lock('k')
    const waiting = locker.lock('k', { waitMs: 1000 })
    const later = locker.lock('k', { waitMs: 5000 })
    await vi.advanceTimersByTimeAsync(1000)
    expect(await waiting).toBeNull()
    await held.free()
    const next = await later
    expect(next.locked).toBe(true)
    await next.free()
    locker.assertNoneHeld()
  })

  it('drives schedule(): one run per interval', async () => {
    vi.useFakeTimers()
    const locker = createTestLocker()
    const runs = []
    const job = locker.schedule('nightly', { everyMs: 1000 }, async () => { runs.push(Date.now()) })
    await vi.advanceTimersByTimeAsync(3000)
    expect(runs.length).toBe(3)
    await job.stop()
  })
})

describe('the test locker', () => {
  it('advance(ms) moves its own clock: expiry and waits fall due at once', async () => {
    vi.useFakeTimers() // Date.now() stands still: only advance() moves the locker's clock here
    onTestFinished(() => { vi.useRealTimers() })
    const locker = createTestLocker({ ttlMs: 30_000 })
    const start = locker.now()
    const lock = await locker.lock('k')
    lock.locked = false // stops refreshing: expires one ttl after the last refresh
    const waiting = locker.lock('k', { waitMs: 60_000 })
    await locker.advance(29_999)
    expect(await locker.inspect('k')).toMatchObject({ expiresInMs: 1 })
    await locker.advance(1)
    const next = await waiting
    expect(next.locked).toBe(true)
    expect(locker.now() - start).toBeGreaterThanOrEqual(30_000)
    expect(locker.stats().takenOver).toBe(1)
    await next.free()
  })

  it('history lists acquisitions, refusals, frees, expiries and losses in order', async () => {
    const locker = createTestLocker()
    const a = await locker.lock('a')
    expect(await locker.lock('a')).toBeNull()
    await a.free()
    const b = await locker.lock(['b', 1])
    locker.expire(['b', 1])
    const c = await locker.lock('c')
    locker.takeOver('c')
    expect(locker.history.map(({ type, key }) => [type, key])).toEqual([
      ['acquired', 'a'],
      ['refused', 'a'],
      ['freed', 'a'],
      ['acquired', ['b', 1]],
      ['expired', ['b', 1]],
      ['acquired', 'c'],
      ['lost', 'c'],
    ])
    expect(locker.history.every((e) => typeof e.at === 'number')).toBe(true)
    expect(b.locked || c.locked).toBe(false)
  })

  it('expire(key): the holder died; its lock is lost (expired) and the next lock() takes over', async () => {
    const locker = createTestLocker()
    const dead = await locker.lock('job')
    locker.expire('job')
    expect(dead.locked).toBe(false)
    expect(dead.signal.reason.message).toMatch(/its expiry passed without a successful refresh/)
    const next = await locker.lock('job')
    expect(next).not.toBeNull()
    expect(await dead.free()).toBe(false)
    expect(next.locked).toBe(true)
    expect(() => locker.expire('nobody')).toThrow(/nobody holds this key/)
  })

  it('takeOver(key): the lock is lost mid-way; signal and onLost, and the key is free for another holder', async () => {
    const locker = createTestLocker()
    const onLost = vi.fn()
    const lock = await locker.lock('payment', { onLost })
    const seen = []
    lock.signal.addEventListener('abort', () => seen.push(lock.signal.reason))
    locker.takeOver('payment')
    expect(seen).toHaveLength(1)
    expect(seen[0]).toBeInstanceOf(LockLostError)
    expect(onLost).toHaveBeenCalledWith(seen[0])
    const other = await locker.lock('payment')
    expect(other).not.toBeNull()
    await other.free()
  })

  it('assertNoneHeld() names the locks still held, and passes once they are freed', async () => {
    const locker = createTestLocker()
    const a = await locker.lock('bank-details-1')
    const permit = await locker.semaphore('exports', { limit: 3 }).acquire()
    expect(locker.heldKeys).toEqual(['bank-details-1', { _semaphore: 'exports', permit: 0 }])
    expect(() => locker.assertNoneHeld()).toThrow(/2 locks still held: "bank-details-1" \(taken \d+ ms ago\), \{"_semaphore":"exports","permit":0\}/)
    await a.free()
    await permit.free()
    expect(locker.heldKeys).toEqual([])
    locker.assertNoneHeld()
  })

  it('a lock abandoned, lost or expired does not count as held', async () => {
    const locker = createTestLocker()
    const a = await locker.lock('a')
    a.locked = false
    const b = await locker.lock('b')
    locker.takeOver('b')
    expect(locker.held).toBe(0)
    locker.assertNoneHeld()
  })

  it('vi.spyOn works on lock() and on a lock\'s free()', async () => {
    const locker = createTestLocker()
    const spy = vi.spyOn(locker, 'lock')
    const lock = await locker.lock('spied')
    const free = vi.spyOn(lock, 'free')
    await lock.free()
    expect(spy).toHaveBeenCalledWith('spied')
    expect(free).toHaveBeenCalledTimes(1)
    spy.mockResolvedValueOnce(null)
    expect(await locker.lock('spied')).toBeNull()
  })

  it('close() rejects waiting callers as closed', async () => {
    const locker = createTestLocker()
    const held = await locker.lock('k')
    const waiting = locker.lock('k', { waitMs: 60_000 })
    await locker.close()
    const err = await waiting.catch((e) => e)
    expect(err).toBeInstanceOf(MongoLocksError)
    expect(err.closed).toBe(true)
    expect(held.locked).toBe(false)
  })

  it('refuses unknown options and a refreshMs not below ttlMs', () => {
    expect(() => createTestLocker({ ttl: 5 })).toThrow(/unknown option "ttl"/)
    expect(() => createTestLocker({ ttlMs: 1000, refreshMs: 1000 })).toThrow(/refreshMs \(1000\) must be less than options.ttlMs \(1000\)/)
  })

  it('uses the same error classes as the main entry', () => {
    const errors = require('../../lib/errors.js')
    expect(LockLostError).toBe(errors.LockLostError)
    expect(MongoLocksError).toBe(errors.MongoLocksError)
    expect(OnceInProgressError).toBe(errors.OnceInProgressError)
    expect(OnceMismatchError).toBe(errors.OnceMismatchError)
    expect(OnceFailedError).toBe(errors.OnceFailedError)
  })
})

/** A promise and its resolve: a gate a run waits at, or a sign that it started. */
const deferred = () => {
  let resolve
  const promise = new Promise((r) => { resolve = r })
  return { promise, resolve }
}

describe('once() on the test locker', () => {
  afterEach(() => { vi.useRealTimers() })

  it('a finished record lives its ttlMs (a day by default) on the fake clock: replayed until then, run again after', async () => {
    vi.useFakeTimers()
    const locker = createTestLocker()
    const fn = vi.fn(async ({ fencingToken }) => fencingToken)
    expect(await locker.once('daily-report', fn)).toBe(1n)
    await vi.advanceTimersByTimeAsync(24 * 60 * 60 * 1000 - 1)
    expect(await locker.once('daily-report', fn)).toBe(1n)
    expect(fn).toHaveBeenCalledTimes(1)
    await vi.advanceTimersByTimeAsync(1)
    expect(await locker.once('daily-report', fn)).toBe(2n)
    expect(locker.stats()).toMatchObject({ onceRuns: 2, onceReplays: 1, onceTakeovers: 0 })
    // advance() moves the locker's own clock the same way.
    await locker.advance(24 * 60 * 60 * 1000)
    expect(await locker.once('daily-report', fn)).toBe(3n)
  })

  it('expireOnce(key) on a run in progress: its signal aborts, the next call takes over and runs, the old run\'s end rejects with LockLostError', async () => {
    const locker = createTestLocker()
    const gate = deferred()
    const started = deferred()
    const old = locker.once('import-7', async ({ signal }) => {
      started.resolve(signal)
      await gate.promise
      return 'old'
    }).catch((e) => e)
    const oldSignal = await started.promise
    expect(locker.heldKeys).toEqual([{ _once: 'import-7' }])
    locker.expireOnce('import-7') // the instance running it died
    expect(oldSignal.aborted).toBe(true)
    expect(oldSignal.reason).toBeInstanceOf(LockLostError)
    expect(oldSignal.reason.message).toMatch(/its expiry passed without a successful refresh/)
    expect(await locker.inspectOnce('import-7')).toMatchObject({ state: 'running' })
    expect(await locker.once('import-7', async ({ fencingToken }) => `new ${fencingToken}`)).toBe('new 2')
    gate.resolve()
    const err = await old
    expect(err).toBeInstanceOf(LockLostError)
    expect(err.result).toBe('old')
    expect(await locker.once('import-7', async () => 'a third run')).toBe('new 2') // the run that took over counts
    expect(locker.stats()).toMatchObject({ onceRuns: 2, onceTakeovers: 1, takenOver: 1, held: 0 })
  })

  it('a run whose record expired but was not taken over yet still stores its outcome, as on the real manager', async () => {
    const locker = createTestLocker()
    const gate = deferred()
    const slow = locker.once('slow-1', async () => { await gate.promise; return 'late but kept' })
    // The run holds its record from the call on: no need to wait for fn to start.
    locker.expireOnce('slow-1')
    gate.resolve()
    expect(await slow).toBe('late but kept')
    expect(await locker.once('slow-1', async () => 'not run')).toBe('late but kept')
  })

  it('expireOnce(key) on a finished record: its ttlMs has passed, the next call runs; without a live record it throws', async () => {
    const locker = createTestLocker()
    const fn = vi.fn(async () => 'sent')
    await locker.once('welcome-mail', fn)
    locker.expireOnce('welcome-mail')
    expect(await locker.inspectOnce('welcome-mail')).toMatchObject({ state: 'completed', expiresInMs: 0 })
    await locker.once('welcome-mail', fn)
    expect(fn).toHaveBeenCalledTimes(2)
    expect(() => locker.expireOnce('never-ran')).toThrow('mongo-locks-native/testing: expireOnce("never-ran"): there is no live once() record of this key')
    locker.expireOnce('welcome-mail')
    expect(() => locker.expireOnce('welcome-mail')).toThrow(/there is no live once\(\) record/)
    expect(() => locker.expireOnce('')).toThrow(/invalid lock key "": the empty string is not a key/)
  })

  it('a waiter (waitMs) on a run whose holder died takes the record over and runs', async () => {
    const locker = createTestLocker()
    const gate = deferred()
    locker.once(['sync', 3], async () => { await gate.promise; return 'first' }).catch(() => {})
    // The run holds its record from the call on: no need to wait for fn to start.
    const waiting = locker.once(['sync', 3], async () => 'second', { waitMs: 60_000 })
    await locker.advance(10_000)
    locker.expireOnce(['sync', 3]) // keys as lock() takes them: the array's record is { _once: { _key_array: [...] } }
    expect(await waiting).toBe('second')
    gate.resolve()
  })

  it('history and heldKeys show a run as the lock on { _once: key }; a call meeting it is refused', async () => {
    const locker = createTestLocker()
    const gate = deferred()
    const running = locker.once('payout-1', async () => { await gate.promise; return 1 })
    // The run holds its record from the call on: no need to wait for fn to start.
    expect(locker.heldKeys).toEqual([{ _once: 'payout-1' }])
    expect(() => locker.assertNoneHeld()).toThrow(/1 lock still held: \{"_once":"payout-1"\}/)
    await expect(locker.once('payout-1', async () => 2)).rejects.toThrow(OnceInProgressError)
    gate.resolve()
    await running
    await locker.once('payout-1', async () => 3)
    locker.assertNoneHeld()
    expect(locker.history.map(({ type, key }) => [type, key])).toEqual([
      ['acquired', { _once: 'payout-1' }],
      ['refused', { _once: 'payout-1' }],
      ['freed', { _once: 'payout-1' }],
    ])
    // A finished record keeps the key taken for lock() too, as the document does on the server.
    expect(await locker.lock({ _once: 'payout-1' })).toBeNull()
  })

  it('close() while a run goes on: the run ends rejecting as closed, and later calls reject', async () => {
    const locker = createTestLocker()
    const gate = deferred()
    const running = locker.once('closing', async () => { await gate.promise; return 'done' }).catch((e) => e)
    // The run holds its record from the call on: no need to wait for fn to start.
    await locker.close()
    gate.resolve()
    const err = await running
    expect(err).toBeInstanceOf(MongoLocksError)
    expect(err.closed).toBe(true)
    await expect(locker.once('after', async () => 1)).rejects.toThrow('mongo-locks-native: this LockManager is closed')
  })
})

// The locking guide's "Mock the Locker" pattern, for code that uses once():
// an application's own module and its test, the test locker as
// `server.locker`. `createPayment` is what a route handler of a Hapi
// backend would call with `request.server`.
describe('an application test with the test locker as server.locker', () => {
  async function createPayment(server, { idempotencyKey, body, charge }) {
    try {
      const payment = await server.locker.once(`payment:${idempotencyKey}`, async ({ fencingToken }) => {
        const receipt = await charge(body.amount)
        return { receipt, amount: body.amount, run: Number(fencingToken) }
      }, { payload: body })
      return { statusCode: 201, payment }
    } catch (err) {
      if (err instanceof OnceInProgressError) return { statusCode: 409 }
      if (err instanceof OnceMismatchError) return { statusCode: 422 }
      throw err
    }
  }

  const locker = createTestLocker()
  afterEach(() => locker.assertNoneHeld())

  it('charges once for a retried request and answers the retry with the same payment', async () => {
    const server = { locker }
    const charge = vi.fn(async (amount) => `rcpt-${amount}`)
    vi.spyOn(locker, 'once')
    const first = await createPayment(server, { idempotencyKey: 'a1', body: { amount: 30 }, charge })
    const retry = await createPayment(server, { idempotencyKey: 'a1', body: { amount: 30 }, charge })
    expect(first).toEqual({ statusCode: 201, payment: { receipt: 'rcpt-30', amount: 30, run: 1 } })
    expect(retry).toEqual(first)
    expect(charge).toHaveBeenCalledTimes(1)
    expect(locker.once).toHaveBeenCalledWith('payment:a1', expect.any(Function), { payload: { amount: 30 } })
    expect(locker.stats()).toMatchObject({ onceRuns: 1, onceReplays: 1 })
  })

  it('answers 422 to the same key with another body, charging nothing', async () => {
    const server = { locker }
    const charge = vi.fn(async (amount) => `rcpt-${amount}`)
    await createPayment(server, { idempotencyKey: 'b2', body: { amount: 30 }, charge })
    expect(await createPayment(server, { idempotencyKey: 'b2', body: { amount: 31 }, charge })).toEqual({ statusCode: 422 })
    expect(charge).toHaveBeenCalledTimes(1)
  })

  it('answers 409 to a retry while the first request is still charging', async () => {
    const server = { locker }
    const gate = deferred()
    const charge = vi.fn(async () => { await gate.promise; return 'rcpt' })
    const first = createPayment(server, { idempotencyKey: 'c3', body: { amount: 5 }, charge })
    // The run holds its record from the call on: no need to wait for fn to start.
    expect(await createPayment(server, { idempotencyKey: 'c3', body: { amount: 5 }, charge })).toEqual({ statusCode: 409 })
    gate.resolve()
    expect((await first).statusCode).toBe(201)
    expect(charge).toHaveBeenCalledTimes(1)
  })

  it('a failed charge is not kept: the retry charges again', async () => {
    const server = { locker }
    const charge = vi.fn().mockRejectedValueOnce(new Error('gateway timeout')).mockResolvedValueOnce('rcpt-9')
    await expect(createPayment(server, { idempotencyKey: 'd4', body: { amount: 9 }, charge })).rejects.toThrow('gateway timeout')
    expect(await createPayment(server, { idempotencyKey: 'd4', body: { amount: 9 }, charge })).toMatchObject({ statusCode: 201, payment: { receipt: 'rcpt-9' } })
    expect(charge).toHaveBeenCalledTimes(2)
  })
})

describe('the packed package with no binary', () => {
  let tmp, dir
  beforeAll(() => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'mongo-locks-native-testing-'))
    const pack = spawnSync('npm', ['pack', '--json', '--pack-destination', tmp], { cwd: root, encoding: 'utf8', env: { ...process.env, npm_config_update_notifier: 'false' } })
    if (pack.status !== 0) throw new Error(`npm pack failed: ${pack.stdout}${pack.stderr}`)
    const [info] = JSON.parse(pack.stdout)
    const untar = spawnSync('tar', ['-xzf', path.join(tmp, info.filename), '-C', tmp], { encoding: 'utf8' })
    if (untar.status !== 0) throw new Error(`tar failed: ${untar.stderr}`)
    dir = path.join(tmp, 'package')
  }, 120_000)
  afterAll(() => { if (tmp) rmSync(tmp, { recursive: true, force: true }) })

  it('has no .node binary, and lib/testing.js locks and frees there while index.js says it has no binary', () => {
    const files = readdirSync(dir, { recursive: true })
    expect(files.filter((f) => f.endsWith('.node'))).toEqual([])
    const script = path.join(tmp, 'check.cjs')
    writeFileSync(script, `
      const out = {}
      const { createTestLocker } = require(${JSON.stringify(path.join(dir, 'lib', 'testing.js'))})
      ;(async () => {
        const locker = createTestLocker()
        const lock = await locker.lock('k')
        out.locked = lock.locked
        out.again = await locker.lock('k')
        out.freed = await lock.free()
        out.once = [await locker.once('o', async () => 42), await locker.once('o', async () => 43)]
        locker.assertNoneHeld()
        try { require(${JSON.stringify(path.join(dir, 'index.js'))}); out.main = 'loaded' } catch (err) { out.main = err.message }
        console.log(JSON.stringify(out))
      })().catch((err) => { console.error(err); process.exit(1) })
    `)
    // A fresh process from outside the repository, with no platform package to find.
    const env = { ...process.env }
    delete env.NAPI_RS_NATIVE_LIBRARY_PATH
    const run = spawnSync(process.execPath, [script], { cwd: tmp, encoding: 'utf8', env })
    expect(run.status, run.stderr).toBe(0)
    const seen = JSON.parse(run.stdout)
    expect(seen).toMatchObject({ locked: true, again: null, freed: true, once: [42, 42] })
    expect(seen.main).toMatch(/^mongo-locks-native \S+ could not load its native addon for /)
  })
})
