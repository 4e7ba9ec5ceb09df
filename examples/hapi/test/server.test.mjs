// The example server against the real test server: the package's Hapi
// plugin connects with mongoUrl; a second LockManager plays another instance
// of the same service.
import { describe, it, expect, beforeEach, afterEach, vi } from 'vitest'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { freshCollection, mongoUrl, runNode, node24, lib, sleep, eventually } from '../../../__test__/support/suite.mjs'
import { createServer } from '../src/server.mjs'

const here = path.dirname(fileURLToPath(import.meta.url))
const nodeMajor = Number(process.versions.node.split('.')[0])

describe('example server', () => {
  let ctx, server, logger, otherInstance
  beforeEach(async () => {
    ctx = await freshCollection('example')
    logger = { debug: vi.fn(), info: vi.fn(), warn: vi.fn(), error: vi.fn() }
    server = await createServer({ mongoUrl: mongoUrl(), databaseName: ctx.db.databaseName, locksCollection: ctx.name, logger })
    await server.initialize()
    otherInstance = new lib.LockManager(ctx.collection)
  })
  afterEach(async () => {
    await otherInstance.close()
    await server.stop()
    await ctx.close()
  })

  const putBankDetails = () => server.inject({ method: 'PUT', url: '/organisations/7/bank-details' })
  const processPayment = () => server.inject({ method: 'POST', url: '/payments/p-7/process' })

  it('updates bank details, and answers 409 while another instance holds the lock', async () => {
    expect((await putBankDetails()).statusCode).toBe(200)
    const held = await otherInstance.lock('bank-details-7')
    const res = await putBankDetails()
    expect(res.statusCode).toBe(409)
    expect(res.result).toEqual({ status: 'locked', retry: true })
    expect(logger.error).toHaveBeenCalledWith('Failed to acquire lock for bank-details-7')
    await held.free()
    expect((await putBankDetails()).statusCode).toBe(200)
    expect(await ctx.collection.countDocuments()).toBe(0)
  })

  it('processes a payment with requireLock, and fails while another instance holds it', async () => {
    expect((await processPayment()).statusCode).toBe(200)
    const held = await otherInstance.lock('payment-processing-p-7')
    expect((await processPayment()).statusCode).toBe(500)
    await held.free()
    expect((await processPayment()).statusCode).toBe(200)
  })

  it('frees the locks it holds when the server stops', async () => {
    await server.locker.lock('held-across-stop')
    expect(await ctx.collection.countDocuments()).toBe(1)
    await server.stop()
    expect(await ctx.collection.countDocuments()).toBe(0)
  })

  it.runIf(nodeMajor < 24)(`leaves the await using route out on Node ${nodeMajor}`, async () => {
    const res = await server.inject({ method: 'POST', url: '/reports/r-1/rebuild' })
    expect(res.statusCode).toBe(404)
  })

  it('serves the await using route on Node 24', async () => {
    const run = await runNode(path.join(here, 'fixtures', 'await-using-route.mjs'), [mongoUrl(), ctx.db.databaseName, ctx.name], { node: node24 })
    expect(run.code, run.stderr).toBe(0)
    const seen = JSON.parse(run.stdout)
    expect(seen.node).toMatch(/^v24\./)
    expect(seen).toMatchObject({ free: 200, busy: [409, { status: 'locked', retry: true }], afterFree: 200, stillHeld: 0 })
    expect(await ctx.collection.countDocuments()).toBe(0)
  })

  it('runs the scheduled job once per interval across two started instances', async () => {
    const runs = []
    const instance = (name) => createServer({
      mongoUrl: mongoUrl(),
      databaseName: ctx.db.databaseName,
      locksCollection: ctx.name,
      port: 0,
      reconcileEveryMs: 1000,
      onReconcile: ({ at }) => runs.push({ name, tick: Math.round(at.getTime() / 1000) }),
      logger,
    })
    const a = await instance('a')
    const b = await instance('b')
    await a.start()
    await b.start()
    // At least four ticks' worth, and until three runs happened (a loaded
    // machine can miss the first tick while the two connect).
    await sleep(4200)
    await eventually(() => runs.length >= 3, 10_000, 100)
    await a.stop()
    await b.stop()
    const perTick = new Map()
    for (const r of runs) perTick.set(r.tick, (perTick.get(r.tick) ?? 0) + 1)
    expect([...perTick.values()].every((n) => n === 1), JSON.stringify(runs)).toBe(true)
    expect(runs.length).toBeGreaterThanOrEqual(3) // one per second, not one per instance
    expect(a.jobs['reconcile-payments'].runs + b.jobs['reconcile-payments'].runs).toBe(runs.length)
  }, 30_000)
})
