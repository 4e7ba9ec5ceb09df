// The Hapi plugin (`mongo-locks-native/hapi`) on a real @hapi/hapi server,
// driven with server.inject, against the real test server.
import { describe, it, expect, beforeEach, afterEach, vi } from 'vitest'
import Hapi from '@hapi/hapi'
import { createRequire } from 'node:module'
import { freshCollection, mongoUrl, eventually, lib } from '../support/suite.mjs'

// By its public name, through package.json "exports" (the package resolves itself).
const require = createRequire(import.meta.url)
const hapiModule = require('mongo-locks-native/hapi')
const { plugin } = hapiModule
const { version } = require('../../package.json')

/** A promise and the function that settles it. */
function gate() {
  let open
  const promise = new Promise((resolve) => { open = resolve })
  return { promise, open }
}

/**
 * The single-resource pattern of the EPR LAPS Backend's locking guide: lock,
 * or a graceful 409. `hold` keeps
 * the lock for as long as the test wants.
 */
function bankDetailsRoute(hold) {
  return {
    method: 'PUT',
    path: '/organisations/{id}/bank-details',
    handler: async (request, h) => {
      const lock = await request.locker.lock(`bank-details-${request.params.id}`)
      if (!lock) {
        return h.response({ status: 'locked', retry: true }).code(409)
      }
      try {
        await hold()
        return { status: 'updated' }
      } finally {
        await lock.free()
      }
    },
  }
}

const put = (server, id = 7) => server.inject({ method: 'PUT', url: `/organisations/${id}/bank-details` })

describe('Hapi plugin with mongoUrl', () => {
  let ctx, server, hold
  beforeEach(async () => {
    ctx = await freshCollection('hapi')
    hold = () => Promise.resolve()
    server = Hapi.server()
    await server.register({
      plugin,
      options: { mongoUrl: mongoUrl(), databaseName: ctx.db.databaseName, collection: ctx.name, ttlMs: 30_000 },
    })
    server.route(bankDetailsRoute(() => hold()))
    server.route({ method: 'GET', path: '/same', handler: (request) => ({ same: request.locker === request.server.locker && request.locker === server.locker }) })
    await server.initialize()
  })
  afterEach(async () => {
    await server.stop()
    await ctx.close()
  })

  it('registers as mongo-locks-native with the package version and decorates server.locker', () => {
    expect(server.registrations['mongo-locks-native']).toMatchObject({ name: 'mongo-locks-native', version })
    expect(server.locker).toBeInstanceOf(lib.LockManager)
    expect(server.decorations.server).toContain('locker')
    expect(server.decorations.request).toContain('locker')
  })

  it('gives request.locker === server.locker', async () => {
    const res = await server.inject('/same')
    expect(res.result).toEqual({ same: true })
  })

  it('lets one of two concurrent requests take the lock; the other gets { status: locked }', async () => {
    const release = gate()
    hold = () => release.promise
    const requests = [put(server), put(server)]
    // The winner waits on the gate, so the first answer is the loser's.
    const loser = await Promise.race(requests)
    expect(loser.statusCode).toBe(409)
    expect(JSON.parse(loser.payload)).toEqual({ status: 'locked', retry: true })
    expect(await ctx.collection.countDocuments({ action: 'bank-details-7' })).toBe(1)
    release.open()
    const statuses = (await Promise.all(requests)).map((r) => r.statusCode).sort()
    expect(statuses).toEqual([200, 409])
    expect(await ctx.collection.countDocuments()).toBe(0)
    // Freed: the next request gets the lock.
    expect((await put(server)).statusCode).toBe(200)
  })

  it('closes the locker on server.stop(), freeing a lock still held', async () => {
    const held = await server.locker.lock('held-across-stop')
    expect(held.locked).toBe(true)
    expect(await ctx.collection.countDocuments({ action: 'held-across-stop' })).toBe(1)
    const close = vi.spyOn(server.locker, 'close') // calls through
    await server.stop()
    // stop() waited for close() to finish (an onPostStop ext, not the 'stop' event).
    expect(close.mock.settledResults).toEqual([{ type: 'fulfilled', value: undefined }])
    expect(await ctx.collection.countDocuments()).toBe(0)
    expect(held.locked).toBe(false)
    await expect(server.locker.lock('after-stop')).rejects.toThrow()
  })

  it('refuses a second registration on the same server', async () => {
    const options = { mongoUrl: mongoUrl(), databaseName: ctx.db.databaseName }
    await expect(server.register({ plugin, options })).rejects.toThrow(/mongo-locks-native already registered/)
  })
})

describe('Hapi plugin option checks at registration', () => {
  let ctx
  beforeEach(async () => { ctx = await freshCollection('hapi-options') })
  afterEach(async () => { await ctx.close() })

  const cases = [
    ['no options', () => undefined, /need either mongoUrl \(with databaseName\) or collection .*got neither/],
    ['mongoUrl and a driver collection', () => ({ mongoUrl: mongoUrl(), databaseName: 'd', collection: ctx.collection }), /either mongoUrl or a driver collection, not both; got mongoUrl and the collection "hapi-options-/],
    ['a mongoUrl that is not a string', () => ({ mongoUrl: 27017, databaseName: 'd' }), /options\.mongoUrl must be a non-empty MongoDB connection string; got number 27017/],
    ['mongoUrl without databaseName', () => ({ mongoUrl: mongoUrl() }), /options\.databaseName must be a non-empty string .* when mongoUrl is given; got undefined/],
    ['a collection name without mongoUrl', () => ({ collection: 'locks' }), /options\.collection must be a MongoDB driver Collection .*needs mongoUrl and databaseName too.*got the string "locks"/],
    ['a plain object as collection', () => ({ collection: { name: 'locks' } }), /options\.collection must be a MongoDB driver Collection .*got an object with keys \[name\]/],
    ['a collection name that is not a string', () => ({ mongoUrl: mongoUrl(), databaseName: 'd', collection: 7 }), /options\.collection must be a non-empty collection name when mongoUrl is given .*got number 7/],
    ['databaseName with a driver collection', () => ({ collection: ctx.collection, databaseName: 'other' }), /databaseName is only used with mongoUrl; the collection "hapi-options-.*" already belongs to database "mongo-locks-native-test"/],
    ['a misspelt option', () => ({ mongoUri: mongoUrl(), databaseName: 'd' }), /unknown plugin option "mongoUri"; expected some of mongoUrl, databaseName, collection, metricsPath, jobs, election, ttlMs, refreshMs, serverSelectionTimeoutMs, operationTimeoutMs, writeConcern/],
    // Locker options are checked by the LockManager itself, with the same names.
    ['a bad ttlMs (with mongoUrl)', () => ({ mongoUrl: mongoUrl(), databaseName: 'd', ttlMs: -5 }), /options\.ttlMs must be a whole number of milliseconds .*got -5/],
    ['a bad refreshMs (with a collection)', () => ({ collection: ctx.collection, refreshMs: 'soon' }), /options\.refreshMs must be a whole number of milliseconds .*got .*soon/],
    ['a bad writeConcern', () => ({ collection: ctx.collection, writeConcern: 'w1' }), /options\.writeConcern must be "auto", "majority" or "default", got .*w1/],
    ['a malformed mongoUrl', () => ({ mongoUrl: 'http://localhost', databaseName: 'd' }), /malformed MongoDB connection string/],
    ['jobs that are not an object', () => ({ collection: ctx.collection, jobs: ['nightly'] }), /options\.jobs must be an object \{ \[name\]: \{ everyMs, minHoldMs, run \} \}; got an array/],
    ['a job without run', () => ({ collection: ctx.collection, jobs: { nightly: { everyMs: 1000 } } }), /options\.jobs\["nightly"\] must be \{ everyMs, run\(signal\) \} with run a function/],
    ['an election without key', () => ({ collection: ctx.collection, election: { onElected: () => {} } }), /options\.election must be \{ key, onElected\(signal\), onDemoted\(reason\) \}/],
    ['an election callback that is not a function', () => ({ collection: ctx.collection, election: { key: 'k', onElected: 'yes' } }), /options\.election\.onElected must be a function; got the string "yes"/],
    ['a job with a bad everyMs', () => ({ collection: ctx.collection, jobs: { nightly: { everyMs: 5, run: () => {} } } }), /schedule\(\) option everyMs must be a whole number of milliseconds from 100 to 2147483647, got 5/],
  ]
  for (const [label, options, message] of cases) {
    it(`rejects ${label} with a TypeError naming it`, async () => {
      const server = Hapi.server()
      const err = await server.register({ plugin, options: options() }).catch((e) => e)
      expect(err).toBeInstanceOf(TypeError)
      expect(err.message).toMatch(message)
      expect(server.locker).toBeUndefined()
      await server.stop()
    })
  }

  it('fails clearly, and closes its locker, when server.locker is already decorated (a hand-written plugin left in place)', async () => {
    const server = Hapi.server()
    server.decorate('server', 'locker', { lock: async () => null })
    const close = vi.spyOn(lib.LockManager.prototype, 'close') // calls through
    try {
      const err = await server.register({ plugin, options: { collection: ctx.collection } }).catch((e) => e)
      expect(err.message).toMatch(/Server decoration already defined: locker/)
      expect(close.mock.settledResults).toEqual([{ type: 'fulfilled', value: undefined }])
    } finally {
      close.mockRestore()
    }
  })
})

describe('Hapi plugin with a backend MongoDB plugin (server.db) and its collection', () => {
  let ctx, server
  // What backends made from the Defra CDP Node.js backend template register
  // first: their own client, as server.db.
  const mongoDbPlugin = {
    name: 'mongodb',
    register: (srv, { db }) => {
      srv.decorate('server', 'db', db)
      srv.decorate('request', 'db', () => db, { apply: true })
    },
  }
  beforeEach(async () => {
    ctx = await freshCollection('hapi-db')
    server = Hapi.server()
    await server.register({ plugin: mongoDbPlugin, options: { db: ctx.db } })
    // The module itself, as `require('mongo-locks-native/hapi')` gives it, is accepted too.
    await server.register({ plugin: hapiModule, options: { collection: server.db.collection(ctx.name), ttlMs: 30_000 } })
    server.route(bankDetailsRoute(() => Promise.resolve()))
    await server.initialize()
  })
  afterEach(async () => {
    await server.stop()
    await ctx.close()
  })

  it('locks in the given collection and leaves server.db alone', async () => {
    expect(server.db).toBe(ctx.db)
    const lock = await server.locker.lock('from-the-backend-collection')
    expect(await server.db.collection(ctx.name).countDocuments({ action: 'from-the-backend-collection' })).toBe(1)
    await lock.free()
    expect((await put(server, 9)).statusCode).toBe(200)
  })

  it('frees held locks on stop without closing the backend client', async () => {
    await server.locker.lock('held-across-stop')
    await server.stop()
    // The backend's own client still works: the locker closed only its own pool.
    expect(await server.db.collection(ctx.name).countDocuments()).toBe(0)
  })
})

describe('Hapi plugin logging', () => {
  let ctx, server
  beforeEach(async () => {
    ctx = await freshCollection('hapi-log')
    server = Hapi.server()
  })
  afterEach(async () => {
    await server.stop()
    await ctx.close()
  })

  const register = () => server.register({ plugin, options: { collection: ctx.collection } })
  const pinoLike = () => ({ debug: vi.fn(), info: vi.fn(), warn: vi.fn(), error: vi.fn() })
  const lockAndFree = async (key) => (await server.locker.lock(key)).free()
  /** The logger's `level` calls as [fields, message]. */
  const calls = (logger, level) => logger[level].mock.calls

  for (const when of ['before', 'after']) {
    it(`sends the locker's logs to server.logger (hapi-pino) decorated ${when} registering`, async () => {
      const logger = pinoLike()
      if (when === 'before') server.decorate('server', 'logger', logger)
      await register()
      if (when === 'after') server.decorate('server', 'logger', logger)
      await lockAndFree('log-me')
      const seen = await eventually(() => calls(logger, 'debug').some(([, m]) => m === 'freed'))
      expect(seen, JSON.stringify(calls(logger, 'debug'))).toBe(true)
      expect(calls(logger, 'debug')).toContainEqual([expect.objectContaining({ action: expect.stringContaining('log-me') }), 'acquired'])
    })
  }

  it('logs a failed job to server.logger.error under the job\'s name', async () => {
    const logger = pinoLike()
    server.decorate('server', 'logger', logger)
    const jobs = { nightly: { everyMs: 100, run: () => { throw new Error('boom') } } }
    await server.register({ plugin, options: { collection: ctx.collection, jobs } })
    await server.start() // jobs start with the server
    const logged = await eventually(() => calls(logger, 'error').find(([, m]) => m === 'job nightly failed'))
    expect(logged, JSON.stringify(calls(logger, 'error'))).toEqual([{ job: 'nightly', err: { message: 'boom' } }, 'job nightly failed'])
  })

  it('uses server.log([mongo-locks-native, level], { message, ...fields }) without server.logger', async () => {
    const events = []
    server.events.on('log', (event, tags) => { if (tags['mongo-locks-native']) events.push(event) })
    await register()
    await lockAndFree('log-me-too')
    const acquired = await eventually(() => events.find((e) => e.data.message === 'acquired'))
    expect(acquired, JSON.stringify(events)).toBeTruthy()
    expect(acquired.tags).toEqual(['mongo-locks-native', 'debug'])
    expect(acquired.data.action).toContain('log-me-too')
  })
})


describe('Hapi plugin election', () => {
  let ctx
  beforeEach(async () => { ctx = await freshCollection('hapi-election') })
  afterEach(async () => { await ctx.close() })

  it('campaigns while the server runs: one of two started servers leads; stopping it hands over', async () => {
    const events = []
    const instance = async (name) => {
      const server = Hapi.server({ port: 0 })
      await server.register({
        plugin,
        options: {
          collection: ctx.collection,
          ttlMs: 2000,
          refreshMs: 500,
          election: { key: 'scheduler', onElected: () => events.push(`${name} elected`), onDemoted: (why) => events.push(`${name} demoted: ${why}`) },
        },
      })
      return server
    }
    const a = await instance('a')
    const b = await instance('b')
    expect(a.election.isLeader).toBe(false) // not before start
    await a.start()
    expect(await eventually(() => a.election?.isLeader, 10_000)).toBe(true)
    await b.start()
    await new Promise((r) => setTimeout(r, 300))
    expect([a.election.isLeader, b.election.isLeader]).toEqual([true, false])
    await a.stop()
    expect(a.election.isLeader).toBe(false)
    expect(await eventually(() => b.election.isLeader, 5000)).toBe(true)
    expect(events).toEqual(['a elected', 'a demoted: stopped', 'b elected'])
    await b.stop()
  })
})
