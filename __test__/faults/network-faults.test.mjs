// Network faults between the manager and the server, made by a real proxy
// (Toxiproxy): slow replies, a server that accepts connections but never
// answers. Every call settles in bounded time, nothing is orphaned, and no
// lock is handed out past its own deadline. This file runs its own FerretDB
// and Toxiproxy; setup and checks use a direct connection, never the proxy.
import { describe, it, expect, beforeAll, afterAll, afterEach } from 'vitest'
import { MongoClient } from 'mongodb'
import { startFerretDB } from '../support/ferretdb.mjs'
import { startToxiproxy } from '../support/toxiproxy.mjs'
import { lib, eventually } from '../support/suite.mjs'

const { LockManager, MongoLocksError } = lib

describe('network faults (Toxiproxy)', () => {
  let server
  let toxiproxy
  let proxy
  let proxied
  let client
  let collection
  let counter = 0
  const managers = []

  beforeAll(async () => {
    server = await startFerretDB()
    toxiproxy = await startToxiproxy()
    proxy = await toxiproxy.proxy('mongo', server.port)
    proxied = `mongodb://127.0.0.1:${proxy.port}/?directConnection=true`
    client = await MongoClient.connect(server.url)
  })
  afterAll(async () => {
    await client?.close()
    await toxiproxy?.stop()
    await server?.stop()
  })
  afterEach(async () => {
    await proxy.clearToxics()
    for (const m of managers.splice(0)) await m.close().catch(() => {})
  })

  /** A manager connected through the proxy (before any fault), on a fresh collection. */
  async function throughProxy(options = {}) {
    collection = client.db('faults').collection(`faults-${counter++}`)
    const m = new LockManager(collection, { uri: proxied, logger: false, ...options })
    managers.push(m)
    await (await m.lock('warm-up')).free()
    return m
  }

  /** A manager on the same collection, straight to the server. */
  function direct() {
    const m = new LockManager(collection, { logger: false })
    managers.push(m)
    return m
  }

  /** Resolves to [outcome, ms]: the value or the error, and how long it took. */
  async function timed(promise) {
    const started = performance.now()
    const outcome = await promise.then((v) => v, (e) => e)
    return [outcome, performance.now() - started]
  }

  it('close() racing an insert in flight: lock() rejects as closed, the document is removed, the key is free when close() returns', async () => {
    const m = await throughProxy()
    await proxy.addToxic('latency', { latency: 1500 })
    const pending = m.lock('k').then((v) => v, (e) => e)
    // The insert has reached the server; its reply has not come back.
    const inserted = async () => (await collection.countDocuments({ action: 'k' })) === 1
    expect(await eventually(inserted, 1400, 5)).toBe(true)
    await m.close()
    const outcome = await pending
    expect(outcome).toBeInstanceOf(MongoLocksError)
    expect(outcome.message).toMatch(/LockManager is closed/)
    expect(await collection.countDocuments({ action: 'k' })).toBe(0)
    expect(await direct().lock('k')).not.toBeNull()
  })

  it('a server that stops answering: lock(), free(), refresh() and close() all settle within the operation timeout', async () => {
    const m = await throughProxy({ operationTimeoutMs: 1000 })
    const held = await m.lock('held')
    await proxy.addToxic('timeout', { timeout: 0 }) // replies never come

    const [locked, lockMs] = await timed(m.lock('k'))
    expect(locked).toBeInstanceOf(MongoLocksError)
    expect(locked.message).toMatch(/no reply from the server within 1000 ms \(operationTimeoutMs\)/)
    expect(lockMs).toBeLessThan(2500)

    const [refreshed, refreshMs] = await timed(held.refresh())
    expect(refreshed).toBeInstanceOf(MongoLocksError)
    expect(refreshMs).toBeLessThan(2500)

    const [freed, freeMs] = await timed(held.free())
    expect(freed).toBeInstanceOf(MongoLocksError)
    expect(freeMs).toBeLessThan(2500)

    const [closed, closeMs] = await timed(m.close())
    expect(closed === undefined || closed instanceof MongoLocksError).toBe(true)
    expect(closeMs).toBeLessThan(5000)
  })

  it('a lock granted after its time was up is not handed out: a clear error, and its document is removed', async () => {
    const m = await throughProxy({ ttlMs: 2000 })
    await proxy.addToxic('latency', { latency: 2500 }) // replies arrive after the ttl
    const [outcome, ms] = await timed(m.lock('late'))
    expect(ms).toBeGreaterThan(2000)
    expect(outcome).toBeInstanceOf(MongoLocksError)
    expect(outcome.message).toMatch(/the server took \d+ ms to grant the lock on "late", and its time was already up \(ttlMs 2000\); it was not handed out/)
    expect(m.held).toBe(0)
    // Our document was removed by its _id (the delete reaches the server at once; only replies are slow).
    expect(await eventually(async () => (await collection.countDocuments({ action: 'late' })) === 0, 3000)).toBe(true)
  })

  it('a free() that failed is tried again by the next free()', async () => {
    const m = await throughProxy({ operationTimeoutMs: 1000 })
    const lock = await m.lock('k')
    const hang = await proxy.addToxic('timeout', { timeout: 0 }, { stream: 'upstream' }) // requests never arrive
    expect(await lock.free().catch((e) => e)).toBeInstanceOf(MongoLocksError)
    expect(lock.locked).toBe(false)
    expect(await collection.countDocuments({ action: 'k' })).toBe(1) // still there
    await proxy.removeToxic(hang)
    expect(await lock.free()).toBe(true)
    expect(await collection.countDocuments({ action: 'k' })).toBe(0)
    expect(await lock.free()).toBe(false) // and once it is gone, false without asking
  })

  it('a refresh round whose locks are all freed while it waits for a slow server is given up without a word', async () => {
    const said = []
    const logger = Object.fromEntries(['debug', 'info', 'warn', 'error'].map((level) => [level, (_, message) => said.push(`${level}: ${message}`)]))
    const m = await throughProxy({ ttlMs: 6000, refreshMs: 1000, logger })
    const lock = await m.lock('k')
    await proxy.addToxic('latency', { latency: 3000 }) // each reply comes 3 s late
    // A round goes every second: one is now waiting for its reply.
    await new Promise((resolve) => setTimeout(resolve, 1300))
    const freed = lock.free()
    // The round has nothing left to keep; before its reply could come, it is
    // dropped, and a burst of frees on a busy server logs no failure.
    await new Promise((resolve) => setTimeout(resolve, 1000))
    expect(said.filter((line) => /^(warn|error)/.test(line))).toEqual([])
    expect(await freed).toBe(true)
    expect(m.stats().errors).toBe(0)
  })

  it('a second close() resolves only when the first is done', async () => {
    const m = await throughProxy()
    await m.lock('k')
    await proxy.addToxic('latency', { latency: 500 })
    const started = performance.now()
    const first = m.close().then(() => performance.now() - started)
    const second = m.close().then(() => performance.now() - started)
    const [firstMs, secondMs] = await Promise.all([first, second])
    expect(secondMs).toBeGreaterThanOrEqual(firstMs - 1)
    expect(secondMs).toBeGreaterThan(400) // it waited for the slow delete
    expect(await collection.countDocuments({ action: 'k' })).toBe(0)
  })
})
