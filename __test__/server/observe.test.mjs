// Seeing locks in production: every document we write says who holds it
// (host, pid, application, manager), `locker.inspect(key)` answers "who holds
// this key?" for our locks and stock mongo-locks' alike, and the manager's
// metrics come in the Prometheus text format (checked with a real parser),
// through prom-client, and on a Hapi route. Real server throughout.
import { describe, it, expect } from 'vitest'
import os from 'node:os'
import Hapi from '@hapi/hapi'
import { Registry, Counter } from 'prom-client'
import parsePrometheus from 'parse-prometheus-text-format'
import { MongoClient } from 'mongodb'
import { useLocker, lib, eventually, mongoUrl } from '../support/suite.mjs'
import { stockLockManager } from '../support/stock-mongo-locks.mjs'

const { LockManager, METRICS_CONTENT_TYPE } = lib

/** `{ name: family }` of a Prometheus text. */
const parse = (text) => Object.fromEntries(parsePrometheus(text).map((f) => [f.name, f]))
const value = (families, name, labels = {}) => {
  const family = families[name]
  const metric = family.metrics.find((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v))
  return Number(metric.value ?? metric.count)
}

describe('holder identity', () => {
  const t = useLocker('holder', { ttlMs: 6000 })

  it('every lock document records host, pid, application and manager; lock.holder says the same', async () => {
    const lock = await t.locker.lock('who')
    const doc = await t.ctx.collection.findOne({ action: 'who' })
    expect(doc.holder).toEqual({ host: os.hostname(), pid: process.pid, app: 'mongo-locks-native', manager: expect.stringMatching(/^[0-9a-f]{24}$/) })
    expect(lock.holder).toEqual(doc.holder)
    // Extra fields only: the fields mongo-locks reads are all there, as before.
    expect(Object.keys(doc).sort()).toEqual(['_id', 'action', 'createdAt', 'expiresAt', 'holder', 'refreshedAt'])
    const other = new LockManager(t.ctx.collection, { logger: false })
    try {
      const theirs = await other.lock('theirs')
      expect(theirs.holder.manager).not.toBe(lock.holder.manager)
    } finally {
      await other.close()
    }
  })

  it('the application name: the appName option, else the connection\'s appName', async () => {
    const named = new LockManager(t.ctx.collection, { appName: 'payments', logger: false })
    const client = new MongoClient(`${mongoUrl()}&appName=from-connection`)
    const viaConnection = new LockManager(client.db(t.ctx.db.databaseName).collection(t.ctx.name), { logger: false })
    try {
      expect((await named.lock('a')).holder.app).toBe('payments')
      expect((await viaConnection.lock('b')).holder.app).toBe('from-connection')
      expect((await t.ctx.collection.findOne({ action: 'b' })).holder.app).toBe('from-connection')
    } finally {
      await named.close()
      await viaConnection.close()
      await client.close()
    }
  })
})

describe('locker.inspect(key)', () => {
  const t = useLocker('inspect', { ttlMs: 6000 })

  it('tells who holds a key, how long since, when it expires in server time, and its fencing token', async () => {
    const lock = await t.locker.lock('fenced', { fencing: true })
    const seen = await t.locker.inspect('fenced')
    expect(seen).toMatchObject({ id: lock.id, holder: lock.holder, heldByThisManager: true, fencingToken: Number(lock.fencingToken) })
    expect(seen.ageMs).toBeGreaterThanOrEqual(-50)
    expect(seen.ageMs).toBeLessThan(2000)
    expect(seen.expiresInMs).toBeGreaterThan(4000)
    expect(seen.expiresInMs).toBeLessThanOrEqual(6100)
    expect(seen.createdAt).toBeInstanceOf(Date)
    expect(seen.expiresAt.getTime() - seen.createdAt.getTime()).toBe(6000)
    const other = new LockManager(t.ctx.collection, { logger: false })
    try {
      expect((await other.inspect('fenced')).heldByThisManager).toBe(false)
    } finally {
      await other.close()
    }
    await lock.free()
    expect(await t.locker.inspect('fenced')).toBeNull()
  })

  it('a stock mongo-locks client\'s lock: no holder, but what is known', async () => {
    const { locker: stock } = await stockLockManager(t.ctx.db, t.ctx.collection)
    const theirs = await stock.lock('stock-held')
    try {
      const seen = await t.locker.inspect('stock-held')
      expect(seen.holder).toBeNull()
      expect(seen.heldByThisManager).toBe(false)
      expect(seen.expiresInMs).toBeGreaterThan(50_000) // stock's 60 s
      expect(seen.createdAt).toBeInstanceOf(Date)
    } finally {
      await theirs.free()
    }
  })

  it('a bad key is a TypeError, as for lock()', async () => {
    await expect(t.locker.inspect(undefined)).rejects.toThrow(TypeError)
  })
})

describe('metrics', () => {
  const t = useLocker('metrics', { ttlMs: 3000, refreshMs: 100 })

  it('in the Prometheus text format: counters, gauges and histograms that match what happened', async () => {
    const a = await t.locker.lock('a')
    const b = await t.locker.lock('b')
    expect(await t.locker.lock('a')).toBeNull() // contended
    const waiter = t.locker.lock('b', { waitMs: 5000 })
    await eventually(() => value(parse(t.locker.metrics()), 'mongo_locks_waiting') === 1, 3000, 10)
    await b.free()
    const c = await waiter
    await eventually(() => t.locker.stats().refreshCommands > 0, 3000)
    await a.free()
    await c.free()

    const text = t.locker.metrics()
    const m = parse(text)
    expect(m.mongo_locks_acquired_total.type).toBe('COUNTER')
    expect(value(m, 'mongo_locks_acquired_total')).toBe(3)
    expect(value(m, 'mongo_locks_contended_total')).toBeGreaterThanOrEqual(2) // the refused call, and the waiter's first try
    expect(value(m, 'mongo_locks_held')).toBe(0)
    expect(value(m, 'mongo_locks_waiting')).toBe(0)
    expect(value(m, 'mongo_locks_refresh_commands_total')).toBeGreaterThan(0)
    expect(m.mongo_locks_acquire_seconds.type).toBe('HISTOGRAM')
    expect(value(m, 'mongo_locks_acquire_seconds')).toBe(3) // count
    expect(value(m, 'mongo_locks_hold_seconds')).toBe(3)
    expect(value(m, 'mongo_locks_wait_seconds')).toBe(1)
    expect(value(m, 'mongo_locks_refresh_seconds')).toBeGreaterThan(0)
    const buckets = m.mongo_locks_acquire_seconds.metrics[0].buckets
    expect(buckets['+Inf']).toBe('3')
    expect(Number(m.mongo_locks_hold_seconds.metrics[0].sum)).toBeGreaterThan(0)
    // No lock key in any series.
    expect(text).not.toMatch(/"a"|"b"|key=/)
  })

  it('constant labels on every series; bad labels are a TypeError', async () => {
    const text = t.locker.metrics({ labels: { app: 'payments' } })
    const m = parse(text)
    expect(m.mongo_locks_held.metrics[0].labels).toEqual({ app: 'payments' })
    // (the parser keeps no labels for histograms: read their lines)
    const series = text.split('\n').filter((l) => l && !l.startsWith('#'))
    expect(series.length).toBeGreaterThan(40)
    for (const line of series) expect(line).toMatch(/\{app="payments"(,le="[^"]+")?\} /)
    expect(() => t.locker.metrics({ labels: { 'bad-name': 'x' } })).toThrow(TypeError)
    expect(() => t.locker.metrics({ labels: { le: 'x' } })).toThrow(/reserved/)
  })

  it('registered into a prom-client registry, beside the application\'s own metrics, read at each scrape', async () => {
    const registry = new Registry()
    const requests = new Counter({ name: 'app_requests_total', help: 'The app\'s own.', registers: [registry] })
    requests.inc()
    t.locker.registerMetrics(registry, { labels: { app: 'payments' } })
    const before = parse(await registry.metrics())
    expect(value(before, 'app_requests_total')).toBe(1)
    expect(value(before, 'mongo_locks_acquired_total', { app: 'payments' })).toBe(0)
    const lock = await t.locker.lock('k')
    const after = parse(await registry.metrics())
    expect(value(after, 'mongo_locks_acquired_total', { app: 'payments' })).toBe(1)
    expect(value(after, 'mongo_locks_held', { app: 'payments' })).toBe(1)
    await lock.free()
    expect(() => t.locker.registerMetrics({})).toThrow(/prom-client Registry/)
  })
})

describe('once() in the metrics', () => {
  const t = useLocker('once-metrics')

  it('a run, a replay, a payload mismatch, a run after the record expired: each counted once, in stats() and as Prometheus counters', async () => {
    const counters = () => {
      const m = parse(t.locker.metrics())
      for (const name of ['runs', 'replays', 'mismatches', 'takeovers']) expect(m[`mongo_locks_once_${name}_total`].type).toBe('COUNTER')
      return {
        runs: value(m, 'mongo_locks_once_runs_total'),
        replays: value(m, 'mongo_locks_once_replays_total'),
        mismatches: value(m, 'mongo_locks_once_mismatches_total'),
        takeovers: value(m, 'mongo_locks_once_takeovers_total'),
      }
    }
    expect(counters()).toEqual({ runs: 0, replays: 0, mismatches: 0, takeovers: 0 })
    let ran = 0
    const charge = async () => {
      ran++
      return { charged: 4200 }
    }
    expect(await t.locker.once('order-1', charge, { payload: { amount: 4200 } })).toEqual({ charged: 4200 })
    expect(counters()).toEqual({ runs: 1, replays: 0, mismatches: 0, takeovers: 0 })
    expect(await t.locker.once('order-1', charge, { payload: { amount: 4200 } })).toEqual({ charged: 4200 })
    expect(counters()).toEqual({ runs: 1, replays: 1, mismatches: 0, takeovers: 0 })
    await expect(t.locker.once('order-1', charge, { payload: { amount: 9900 } })).rejects.toMatchObject({ code: 'ONCE_PAYLOAD_MISMATCH' })
    expect(counters()).toEqual({ runs: 1, replays: 1, mismatches: 1, takeovers: 0 })
    expect(ran).toBe(1)

    // A record kept 1 s: once it has certainly expired on the server's clock,
    // the next call removes it and runs again: a run, not a takeover (no run
    // died). Calls made before then are replays, and counted as such.
    await t.locker.once('order-2', charge, { ttlMs: 1000 })
    let replays = 1
    for (const deadline = Date.now() + 20_000; ran === 2; ) {
      expect(Date.now()).toBeLessThan(deadline)
      await new Promise((resolve) => setTimeout(resolve, 500))
      await t.locker.once('order-2', charge, { ttlMs: 1000 })
      if (ran === 2) replays++
    }
    expect(ran).toBe(3)
    expect(counters()).toEqual({ runs: 3, replays, mismatches: 1, takeovers: 0 })
    const stats = t.locker.stats()
    expect(stats).toMatchObject({ onceRuns: 3, onceReplays: replays, onceMismatches: 1, onceTakeovers: 0 })
  })
})

describe('metrics on a Hapi route', () => {
  it('served at the plugin\'s metricsPath', async () => {
    const server = Hapi.server()
    const client = await MongoClient.connect(mongoUrl())
    try {
      await server.register({ plugin: lib.hapiPlugin, options: { collection: client.db('mongo-locks-native-test').collection(`metrics-hapi-${Date.now()}`), metricsPath: '/metrics' } })
      const lock = await server.locker.lock('k')
      const res = await server.inject('/metrics')
      expect(res.statusCode).toBe(200)
      expect(res.headers['content-type']).toBe(METRICS_CONTENT_TYPE)
      expect(value(parse(res.payload), 'mongo_locks_held')).toBe(1)
      await lock.free()
      await expect(server.register({ plugin: { ...lib.hapiPlugin, name: 'again' }, options: { collection: {}, metricsPath: 'metrics' } })).rejects.toThrow(/metricsPath must be a route path/)
    } finally {
      await server.stop()
      await client.close()
    }
  })
})
