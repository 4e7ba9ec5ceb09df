// The routes with the test locker of `mongo-locks-native/testing` in place of
// the hand mock (`{ lock: vi.fn() }`) that the EPR LAPS Backend's locking
// guide teaches, wired by hand as the MongoDB plugin of backends made from
// the Defra CDP Node.js backend template does. No database, and the real rules: a held key gives null,
// and a lock left held fails the test (afterEach: assertNoneHeld).
import { describe, it, expect, vi, beforeEach, afterEach } from 'vitest'
import Hapi from '@hapi/hapi'
import { createTestLocker } from 'mongo-locks-native/testing'
import { acquireLock } from '../src/common/helpers/mongo-lock.mjs'
import { logging } from '../src/common/helpers/logging.mjs'
import { routes } from '../src/routes/index.mjs'

const nodeMajor = Number(process.versions.node.split('.')[0])

async function serverWith(locker, logger, extraRoutes = []) {
  const server = Hapi.server()
  await server.register({ plugin: logging, options: { logger } })
  server.decorate('server', 'locker', locker)
  server.decorate('request', 'locker', () => locker, { apply: true })
  server.route([...routes, ...extraRoutes])
  return server
}

describe('routes with the test locker', () => {
  let locker, logger
  beforeEach(() => {
    locker = createTestLocker()
    vi.spyOn(locker, 'lock')
    logger = { debug: vi.fn(), info: vi.fn(), warn: vi.fn(), error: vi.fn() }
  })
  // Every route must leave no lock behind, whatever it answered.
  afterEach(() => locker.assertNoneHeld())

  it('PUT bank-details takes the organisation lock and frees it', async () => {
    const server = await serverWith(locker, logger)
    const res = await server.inject({ method: 'PUT', url: '/organisations/42/bank-details' })
    expect(res.statusCode).toBe(200)
    expect(res.result).toEqual({ status: 'updated', organisationId: '42' })
    expect(locker.lock).toHaveBeenCalledWith('bank-details-42')
    expect(locker.history.map((e) => [e.type, e.key])).toEqual([['acquired', 'bank-details-42'], ['freed', 'bank-details-42']])
  })

  it('PUT bank-details answers 409 and logs when another instance holds the lock', async () => {
    const held = await locker.lock('bank-details-42') // as another instance would
    const server = await serverWith(locker, logger)
    const res = await server.inject({ method: 'PUT', url: '/organisations/42/bank-details' })
    expect(res.statusCode).toBe(409)
    expect(res.result).toEqual({ status: 'locked', retry: true })
    expect(logger.error).toHaveBeenCalledWith('Failed to acquire lock for bank-details-42')
    await held.free()
    expect((await server.inject({ method: 'PUT', url: '/organisations/42/bank-details' })).statusCode).toBe(200)
  })

  it('PUT bank-details after the previous holder died: its lock expired, this request takes it over', async () => {
    await locker.lock('bank-details-42') // never freed: the instance holding it crashed…
    locker.expire('bank-details-42') // …and its lock ran out
    const server = await serverWith(locker, logger)
    const res = await server.inject({ method: 'PUT', url: '/organisations/42/bank-details' })
    expect(res.statusCode).toBe(200)
    expect(locker.stats().takenOver).toBe(1)
  })

  it('POST payments takes the payment lock and frees it', async () => {
    const server = await serverWith(locker, logger)
    const res = await server.inject({ method: 'POST', url: '/payments/p-1/process' })
    expect(res.statusCode).toBe(200)
    expect(locker.lock).toHaveBeenCalledWith('payment-processing-p-1')
    expect(locker.history.map((e) => e.type)).toEqual(['acquired', 'freed'])
  })

  it('POST payments fails (500) when requireLock finds the lock taken', async () => {
    const held = await locker.lock('payment-processing-p-1')
    const server = await serverWith(locker, logger)
    const res = await server.inject({ method: 'POST', url: '/payments/p-1/process' })
    expect(res.statusCode).toBe(500)
    expect(locker.history.map((e) => e.type)).toEqual(['acquired', 'refused'])
    await held.free()
  })

  // `await using` calls Symbol.asyncDispose, which the test locker's locks
  // have, as the real ones do (the locking guide's `{ free }` mock did not).
  it.runIf(nodeMajor >= 24)('POST reports frees its lock through Symbol.asyncDispose', async () => {
    const server = await serverWith(locker, logger)
    const res = await server.inject({ method: 'POST', url: '/reports/r-1/rebuild' })
    expect(res.statusCode).toBe(200)
    expect(locker.lock).toHaveBeenCalledWith('report-r-1')
    expect(locker.history.map((e) => [e.type, e.key])).toEqual([['acquired', 'report-r-1'], ['freed', 'report-r-1']])
  })

  // A handler that forgets free(): with the guide's hand mock this passed (nothing
  // checked), and in production the key stays taken until the instance
  // stops. assertNoneHeld is what catches it.
  it('a handler that forgets free() is caught by assertNoneHeld', async () => {
    const forgetful = {
      method: 'PUT',
      path: '/organisations/{organisationId}/bank-details-forgetful',
      handler: async (request) => {
        const lock = await acquireLock(request.locker, `bank-details-${request.params.organisationId}`, request.logger)
        if (!lock) return { status: 'locked' }
        return { status: 'updated' } // no try/finally, no free()
      },
    }
    const server = await serverWith(locker, logger, [forgetful])
    const res = await server.inject({ method: 'PUT', url: '/organisations/42/bank-details-forgetful' })
    expect(res.statusCode).toBe(200) // the response alone does not show the mistake…
    expect(() => locker.assertNoneHeld()).toThrow(/1 lock still held: "bank-details-42"/) // …this does
    // And the next request for the organisation finds it taken.
    expect((await server.inject({ method: 'PUT', url: '/organisations/42/bank-details' })).statusCode).toBe(409)
    locker.expire('bank-details-42') // let afterEach's check pass: this test expected the leak
  })
})
