// Idempotent Hapi routes (`options.plugins.locks.idempotency`): a retried
// request with the same Idempotency-Key gets the first response instead of
// running the handler again, on every way an application gives Hapi its
// locker, driven with server.inject against the real test server.
import { describe, it, expect, beforeEach, afterEach } from 'vitest'
import Hapi from '@hapi/hapi'
import { createRequire } from 'node:module'
import { Readable } from 'node:stream'
import { freshCollection, mongoUrl, lib } from '../support/suite.mjs'

const require = createRequire(import.meta.url)
const { plugin, idempotency } = require('mongo-locks-native/hapi')
const { createTestLocker } = require('mongo-locks-native/testing')

/** A promise and the function that settles it. */
function gate() {
  let open
  const promise = new Promise((resolve) => { open = resolve })
  return { promise, open }
}

/**
 * Each way a Hapi server gets `server.locker` (the plugin's two ways, as
 * MANAGER_KINDS makes them, and the idempotency plugin alone over a locker
 * made by hand or the test locker); `shared` is what two instances share.
 */
const KINDS = {
  'the Hapi plugin with mongoUrl': {
    shared: async (ctx) => ctx,
    register: (server, ctx) => server.register({ plugin, options: { mongoUrl: mongoUrl(), databaseName: ctx.db.databaseName, collection: ctx.name } }),
  },
  'the Hapi plugin with collection': {
    shared: async (ctx) => ctx,
    register: (server, ctx) => server.register({ plugin, options: { collection: ctx.collection } }),
  },
  'a LockManager decorated by hand, with the idempotency plugin': {
    shared: async (ctx) => ctx,
    register: async (server, ctx) => {
      const locker = new lib.LockManager(ctx.collection, { logger: false })
      server.decorate('server', 'locker', locker)
      server.ext('onPostStop', () => locker.close())
      await server.register(idempotency)
    },
  },
  'createTestLocker(), with the idempotency plugin': {
    // In memory: two "instances" share one test locker, as they would share a collection.
    shared: async () => createTestLocker(),
    register: async (server, locker) => {
      server.decorate('server', 'locker', locker)
      await server.register(idempotency)
    },
  },
}

/** An order-creating route that counts its runs; `hold` lets a test keep it running. */
function orderRoutes(state) {
  const create = (path) => ({
    method: 'POST',
    path,
    options: { plugins: { locks: { idempotency: true } } },
    handler: async (request, h) => {
      state.runs.push({ path, body: request.payload })
      await state.hold()
      if (request.payload.fail) throw new Error('the payment service is down')
      if (request.payload.unavailable) return h.response({ retry: true }).code(503)
      const id = state.runs.length
      // A field name with a dot, which MongoDB refuses in stored documents.
      return h.response({ id, amount: request.payload.amount, 'currency.code': 'GBP' })
        .created(`/orders/${id}`)
        .header('x-order-id', String(id))
    },
  })
  return [
    create('/orders'),
    create('/refunds'),
    {
      method: 'POST',
      path: '/reports',
      options: { plugins: { locks: { idempotency: { maxResponseBytes: 4096 } } } },
      handler: (request) => {
        state.runs.push({ path: '/reports' })
        return 'x'.repeat(request.payload.size)
      },
    },
  ]
}

const post = (server, url, body, key) => server.inject({
  method: 'POST',
  url,
  payload: body,
  headers: key === undefined ? {} : { 'idempotency-key': key },
})

/** The headers a client sees, without those that differ on every response anyway. */
const sameHeaders = (res) => {
  const { date, 'idempotent-replayed': replayed, ...rest } = res.headers
  return rest
}

for (const [kind, { shared, register }] of Object.entries(KINDS)) {
  describe(`idempotent routes with ${kind}`, () => {
    let ctx, state, servers
    /** A started (initialized) server with the order routes on the shared locker. */
    const instance = async (on) => {
      const server = Hapi.server()
      await register(server, on)
      server.route(orderRoutes(state))
      await server.initialize()
      servers.push(server)
      return server
    }
    let server, on
    beforeEach(async () => {
      ctx = await freshCollection('hapi-idem')
      state = { runs: [], hold: () => Promise.resolve() }
      servers = []
      on = await shared(ctx)
      server = await instance(on)
    })
    afterEach(async () => {
      for (const s of servers) await s.stop()
      await ctx.close()
    })

    it('runs the first request and replays it to a retry: same status, headers and body, the handler run once', async () => {
      const first = await post(server, '/orders', { amount: 12 }, 'order-1')
      expect(first.statusCode).toBe(201)
      expect(JSON.parse(first.payload)).toEqual({ id: 1, amount: 12, 'currency.code': 'GBP' })
      expect(first.headers.location).toBe('/orders/1')
      expect(first.headers['idempotent-replayed']).toBeUndefined()

      const retry = await post(server, '/orders', { amount: 12 }, 'order-1')
      expect(retry.statusCode).toBe(201)
      expect(retry.payload).toBe(first.payload)
      expect(sameHeaders(retry)).toEqual(sameHeaders(first))
      expect(retry.headers['idempotent-replayed']).toBe('true')
      expect(state.runs).toHaveLength(1)
      // Kept under the method, the route's path and the key.
      expect(await server.locker.inspectOnce('POST /orders order-1')).toMatchObject({ state: 'completed' })

      // The draft's quoted form of the header is the same key.
      const quoted = await post(server, '/orders', { amount: 12 }, '"order-1"')
      expect(quoted.headers['idempotent-replayed']).toBe('true')
      // A new key is a new order.
      const other = await post(server, '/orders', { amount: 12 }, 'order-2')
      expect(JSON.parse(other.payload).id).toBe(2)
      expect(state.runs).toHaveLength(2)
    })

    it('answers 422 to the same key with a different body, without running the handler', async () => {
      await post(server, '/orders', { amount: 12 }, 'order-1')
      const res = await post(server, '/orders', { amount: 13 }, 'order-1')
      expect(res.statusCode).toBe(422)
      expect(JSON.parse(res.payload)).toMatchObject({ statusCode: 422, message: expect.stringMatching(/already used for a different request/) })
      expect(state.runs).toHaveLength(1)
      // The same fields in another order are the same body.
      const reordered = await server.inject({ method: 'POST', url: '/orders', payload: '{"b":1,"amount":12}', headers: { 'idempotency-key': 'order-3', 'content-type': 'application/json' } })
      const again = await server.inject({ method: 'POST', url: '/orders', payload: '{"amount":12,"b":1}', headers: { 'idempotency-key': 'order-3', 'content-type': 'application/json' } })
      expect(reordered.statusCode).toBe(201)
      expect(again.headers['idempotent-replayed']).toBe('true')
    })

    it('answers 409 to a duplicate while the first request still runs, then replays once it is done', async () => {
      const release = gate()
      state.hold = () => release.promise
      const first = post(server, '/orders', { amount: 5 }, 'slow')
      // Until the handler holds the record, a duplicate could be the one that runs.
      await expect.poll(() => state.runs.length, { timeout: 10_000 }).toBe(1)
      const duplicate = await post(server, '/orders', { amount: 5 }, 'slow')
      expect(duplicate.statusCode).toBe(409)
      expect(JSON.parse(duplicate.payload).message).toMatch(/still being processed; retry it later/)
      release.open()
      expect((await first).statusCode).toBe(201)
      const retry = await post(server, '/orders', { amount: 5 }, 'slow')
      expect(retry.headers['idempotent-replayed']).toBe('true')
      expect(state.runs).toHaveLength(1)
    })

    it('answers 400 when the Idempotency-Key header is missing, without running the handler', async () => {
      const res = await post(server, '/orders', { amount: 1 })
      expect(res.statusCode).toBe(400)
      expect(JSON.parse(res.payload).message).toMatch(/needs an Idempotency-Key header/)
      expect(state.runs).toHaveLength(0)
    })

    it('does not store a 5xx, thrown or answered: the retry runs the handler again', async () => {
      for (const [body, statusCode] of [[{ amount: 1, fail: true }, 500], [{ amount: 1, unavailable: true }, 503]]) {
        const failed = await post(server, '/orders', body, `flaky-${statusCode}`)
        expect(failed.statusCode).toBe(statusCode)
        const retry = await post(server, '/orders', body, `flaky-${statusCode}`)
        expect(retry.statusCode).toBe(statusCode)
        expect(retry.headers['idempotent-replayed']).toBeUndefined()
      }
      expect(state.runs).toHaveLength(4)
      // Nothing kept: the record was freed each time.
      expect(await server.locker.inspectOnce('POST /orders flaky-503')).toBeNull()
    })

    it('does not store a response over maxResponseBytes, but stores one under it', async () => {
      const big = await post(server, '/reports', { size: 5000 }, 'big')
      expect(big.statusCode).toBe(200)
      expect(big.payload).toHaveLength(5000)
      const bigRetry = await post(server, '/reports', { size: 5000 }, 'big')
      expect(bigRetry.payload).toHaveLength(5000)
      expect(bigRetry.headers['idempotent-replayed']).toBeUndefined()
      expect(state.runs).toHaveLength(2)

      await post(server, '/reports', { size: 3000 }, 'small')
      const smallRetry = await post(server, '/reports', { size: 3000 }, 'small')
      expect(smallRetry.headers['idempotent-replayed']).toBe('true')
      expect(smallRetry.payload).toHaveLength(3000)
      expect(state.runs).toHaveLength(3)
    })

    it('keeps one key on two routes apart', async () => {
      const order = await post(server, '/orders', { amount: 7 }, 'same-key')
      const refund = await post(server, '/refunds', { amount: 7 }, 'same-key')
      expect(refund.statusCode).toBe(201)
      expect(refund.headers['idempotent-replayed']).toBeUndefined()
      expect(state.runs.map((r) => r.path)).toEqual(['/orders', '/refunds'])
      expect(JSON.parse(refund.payload).id).not.toBe(JSON.parse(order.payload).id)
    })

    it('replays on another instance sharing the locks: the retry lands elsewhere', async () => {
      const other = await instance(on)
      const first = await post(server, '/orders', { amount: 9 }, 'cross')
      const retry = await post(other, '/orders', { amount: 9 }, 'cross')
      expect(retry.headers['idempotent-replayed']).toBe('true')
      expect(retry.statusCode).toBe(first.statusCode)
      expect(retry.payload).toBe(first.payload)
      expect(sameHeaders(retry)).toEqual(sameHeaders(first))
      expect(state.runs).toHaveLength(1)
      // And the duplicate while it runs, from the other instance: 409.
      const release = gate()
      state.hold = () => release.promise
      const slow = post(server, '/orders', { amount: 9 }, 'cross-slow')
      await expect.poll(() => state.runs.length, { timeout: 10_000 }).toBe(2)
      expect((await post(other, '/orders', { amount: 9 }, 'cross-slow')).statusCode).toBe(409)
      release.open()
      expect((await slow).statusCode).toBe(201)
    })
  })
}

describe('idempotent route options', () => {
  let ctx, server
  beforeEach(async () => {
    ctx = await freshCollection('hapi-idem-options')
    server = Hapi.server()
    await server.register({ plugin, options: { collection: ctx.collection } })
  })
  afterEach(async () => {
    await server.stop()
    await ctx.close()
  })

  const route = (locks, extra = {}) => ({ method: 'POST', path: '/pay', options: { plugins: { locks }, ...extra }, handler: () => ({ paid: true }) })
  const cases = [
    ['idempotency that is not true, false or an object', { idempotency: 'yes' }, /route POST \/pay: options\.plugins\.locks\.idempotency must be true, false or an object with some of required, key, ttlMs, waitMs, maxResponseBytes; got the string "yes"/],
    ['a misspelt option', { idempotency: { requried: false } }, /route POST \/pay: options\.plugins\.locks\.idempotency has unknown option "requried"; expected some of required, key/],
    ['an unknown locks option', { idempotent: true }, /route POST \/pay: options\.plugins\.locks has unknown option "idempotent"; expected idempotency/],
    ['required that is not a boolean', { idempotency: { required: 'no' } }, /idempotency\.required must be true or false; got the string "no"/],
    ['key that is not a function', { idempotency: { key: 'x-request-id' } }, /idempotency\.key must be a function \(request\) => string .*; got the string "x-request-id"/],
    ['a negative ttlMs', { idempotency: { ttlMs: -1 } }, /idempotency\.ttlMs must be a whole number of milliseconds from 1 to 2147483647 .*; got number -1/],
    ['a fractional waitMs', { idempotency: { waitMs: 1.5 } }, /idempotency\.waitMs must be a whole number of milliseconds from 0 to 2147483647 .*; got number 1.5/],
    ['maxResponseBytes over the record limit', { idempotency: { maxResponseBytes: 16 * 1024 * 1024 } }, /idempotency\.maxResponseBytes must be a whole number of bytes from 1 to 15728640; got number 16777216/],
  ]
  for (const [label, locks, message] of cases) {
    it(`refuses ${label} with a TypeError naming the route`, () => {
      const err = (() => { try { server.route(route(locks)) } catch (e) { return e } })()
      expect(err).toBeInstanceOf(TypeError)
      expect(err.message).toMatch(message)
    })
  }

  it('refuses a streamed request body, which cannot be compared with a retry', () => {
    expect(() => server.route(route({ idempotency: true }, { payload: { output: 'stream', parse: false } })))
      .toThrow(/route POST \/pay: idempotency needs the request body .* payload\.output "stream"; use 'data'/)
  })

  it('checks routes added before the plugin too, and says at start when server.locker has no once()', async () => {
    const early = Hapi.server()
    early.route(route({ idempotency: { waitMs: -2 } }))
    await expect(early.register(idempotency)).rejects.toThrow(/route POST \/pay: .*waitMs .*got number -2/)

    const bare = Hapi.server()
    await bare.register(idempotency)
    bare.route(route({ idempotency: true }))
    await expect(bare.initialize()).rejects.toThrow(/route POST \/pay uses plugins\.locks\.idempotency, which needs server\.locker with once\(\); got no server\.locker/)
  })

  it('runs a route that does not require the key normally without one, and idempotently with one', async () => {
    let runs = 0
    server.route({ method: 'POST', path: '/maybe', options: { plugins: { locks: { idempotency: { required: false } } } }, handler: () => ({ run: ++runs }) })
    await server.initialize()
    const plain = [await server.inject({ method: 'POST', url: '/maybe' }), await server.inject({ method: 'POST', url: '/maybe' })]
    expect(plain.map((r) => JSON.parse(r.payload).run)).toEqual([1, 2])
    const keyed = () => server.inject({ method: 'POST', url: '/maybe', headers: { 'idempotency-key': 'k' } })
    const a = await keyed()
    const b = await keyed()
    expect(JSON.parse(b.payload)).toEqual(JSON.parse(a.payload))
    expect(runs).toBe(3)
  })

  it('takes the key from the key option, and stores a 4xx the handler answered', async () => {
    let runs = 0
    server.route({
      method: 'POST',
      path: '/transfers/{account}',
      options: { plugins: { locks: { idempotency: { key: (request) => request.headers['x-transfer-id'] } } } },
      handler: (request, h) => { runs++; return h.response({ error: 'insufficient funds' }).code(402) },
    })
    await server.initialize()
    const send = (account, id) => server.inject({ method: 'POST', url: `/transfers/${account}`, headers: id ? { 'x-transfer-id': id } : {} })
    expect((await send('a')).statusCode).toBe(400)
    const first = await send('a', 't1')
    const retry = await send('a', 't1')
    expect([first.statusCode, retry.statusCode]).toEqual([402, 402])
    expect(retry.headers['idempotent-replayed']).toBe('true')
    // Another account (path parameter) with the same key is a different request.
    expect((await send('b', 't1')).statusCode).toBe(422)
    expect(runs).toBe(1)
  })

  it('holds the key for as long as the handler runs, even after Hapi answered a server timeout', async () => {
    const release = gate()
    let runs = 0
    server.route({
      method: 'POST',
      path: '/slow',
      options: { timeout: { server: 50 }, plugins: { locks: { idempotency: true } } },
      handler: async () => { runs++; await release.promise; return { done: runs } },
    })
    await server.initialize()
    const send = () => server.inject({ method: 'POST', url: '/slow', headers: { 'idempotency-key': 's' } })
    // Hapi gives up on the request, but its handler goes on.
    expect((await send()).statusCode).toBe(503)
    // A retry now must not run the handler beside it.
    expect((await send()).statusCode).toBe(409)
    release.open()
    // Once it has finished, its response is what retries get.
    await expect.poll(async () => (await send()).payload, { timeout: 10_000 }).toBe('{"done":1}')
    expect(runs).toBe(1)
  })

  it('does not store a streamed response: the retry runs again', async () => {
    let runs = 0
    server.route({ method: 'POST', path: '/export', options: { plugins: { locks: { idempotency: true } } }, handler: () => Readable.from([Buffer.from(`run ${++runs}`)], { objectMode: false }) })
    await server.initialize()
    const send = () => server.inject({ method: 'POST', url: '/export', headers: { 'idempotency-key': 'e' } })
    expect((await send()).payload).toBe('run 1')
    const retry = await send()
    expect(retry.payload).toBe('run 2')
    expect(retry.headers['idempotent-replayed']).toBeUndefined()
  })

  it('answers 400 to an Idempotency-Key over 255 characters, without running the handler', async () => {
    let runs = 0
    server.route({ method: 'POST', path: '/long', options: { plugins: { locks: { idempotency: true } } }, handler: () => ({ run: ++runs }) })
    await server.initialize()
    const res = await server.inject({ method: 'POST', url: '/long', headers: { 'idempotency-key': 'k'.repeat(256) } })
    expect(res.statusCode).toBe(400)
    expect(JSON.parse(res.payload).message).toBe('The Idempotency-Key header must be at most 255 characters; this one has 256')
    expect(runs).toBe(0)
    expect((await server.inject({ method: 'POST', url: '/long', headers: { 'idempotency-key': 'k'.repeat(255) } })).statusCode).toBe(200)
  })

  it('does not store a 409 the handler answered (it tells the client to try again)', async () => {
    let runs = 0
    server.route({ method: 'POST', path: '/busy', options: { plugins: { locks: { idempotency: true } } }, handler: (request, h) => h.response({ status: 'locked', retry: true, run: ++runs }).code(409) })
    await server.initialize()
    const send = () => server.inject({ method: 'POST', url: '/busy', headers: { 'idempotency-key': 'b' } })
    expect((await send()).statusCode).toBe(409)
    expect(JSON.parse((await send()).payload).run).toBe(2)
  })

  it('logs a replay at debug and a reused key at info through the request logger', async () => {
    const events = []
    server.events.on({ name: 'request', channels: 'app' }, (request, event, tags) => { if (tags.idempotency) events.push(event) })
    server.route({ method: 'POST', path: '/log', options: { plugins: { locks: { idempotency: true } } }, handler: () => ({ ok: true }) })
    await server.initialize()
    const send = (payload) => server.inject({ method: 'POST', url: '/log', payload, headers: { 'idempotency-key': 'log-1' } })
    await send({ a: 1 })
    await send({ a: 1 })
    await send({ a: 2 })
    expect(events.map((e) => [e.tags.at(-1), e.data.message])).toEqual([
      ['debug', 'idempotent request replayed'],
      ['info', 'idempotency key reused for a different request'],
    ])
    expect(events[0].data).toMatchObject({ idempotencyKey: 'log-1', statusCode: 200 })
  })
})
