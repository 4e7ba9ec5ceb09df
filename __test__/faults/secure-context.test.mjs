// The Defra CDP Node.js backend template (a Hapi service template)
// registers @defra/hapi-secure-context, which patches
// tls.createSecureContext with the TRUSTSTORE_* CAs; older copies also pass
// `server.secureContext` to MongoClient.connect, the current one does not.
// It builds its locker with `new LockManager(db.collection('mongo-locks'))`
// and sets no timeout. Node cannot list a secure context's CAs, so the
// manager trusts what such a context trusts in practice (Node's default CAs,
// TRUSTSTORE_*, tls.extraCa) and, when that is not enough, says what to
// pass, once and within operationTimeoutMs. Real TLS (a per-run CA made with
// openssl), the real plugin, the Node driver 6 and 7, both shapes of the
// template; each app in a process of its own, with NODE_EXTRA_CA_CERTS,
// SSL_CERT_FILE and SSL_CERT_DIR unset; no timeout option anywhere.
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import path from 'node:path'
import tls from 'node:tls'
import { readFileSync, rmSync } from 'node:fs'
import { MongoClient } from 'mongodb'
import { startFerretDB } from '../support/ferretdb.mjs'
import { makeTestCA } from '../support/test-ca.mjs'
import { lib, runNode, root } from '../support/suite.mjs'

const { LockManager, MongoLocksError } = lib
const fixture = path.join(root, '__test__', 'fixtures', 'template-app.mjs')
/** The documented bound on a call that cannot use the server, with the defaults. */
const OPERATION_TIMEOUT_MS = 10_000
/** Room for a loaded 2-core machine (the cases run at once). */
const SLACK_MS = 4_000
/** The two shapes of the template: older copies pass the secureContext, the current one does not. */
const SHAPES = { 'secureContext passed': 'pass', 'no secureContext (the current template)': 'none' }

function cleanEnv(extra) {
  const env = { ...process.env, ...extra }
  for (const name of ['NODE_EXTRA_CA_CERTS', 'SSL_CERT_FILE', 'SSL_CERT_DIR']) delete env[name]
  for (const name of Object.keys(env)) if (name.startsWith('TRUSTSTORE_') && !(name in extra)) delete env[name]
  return env
}

/** A manager on `collection` with `options` locks and frees; `check(settings)` after the lock. */
async function locksWith(collection, options, check) {
  const locker = new LockManager(collection, { logger: false, ...options })
  try {
    const lock = await locker.lock('k')
    expect(lock).not.toBeNull()
    check(locker.settings)
    await lock.free()
  } finally {
    await locker.close()
  }
}

/** Runs the template-shaped app; resolves to what it printed. */
async function runApp(mode, env) {
  const run = await runNode(fixture, [mode, `template-${mode}-${Date.now()}`], { env, timeoutMs: 60_000 })
  const line = run.stdout.trim().split('\n').pop()
  expect(run.code, `exit ${run.code}\nstdout: ${run.stdout}\nstderr: ${run.stderr}`).toBe(0)
  return { ...JSON.parse(line), ms: run.ms }
}

describe.concurrent('the Defra CDP Node.js backend template: @defra/hapi-secure-context, then MongoClient.connect(url), with and without secureContext', () => {
  let ca
  let other
  let server
  let mtls
  beforeAll(async () => {
    ca = makeTestCA()
    other = makeTestCA() // a CA the server does not use
    server = await startFerretDB({ tls: { certFile: ca.serverCertFile, keyFile: ca.serverKeyFile } })
    mtls = await startFerretDB({ tls: { certFile: ca.serverCertFile, keyFile: ca.serverKeyFile, caFile: ca.caFile } })
  })
  afterAll(async () => {
    await server?.stop()
    await mtls?.stop()
    for (const dir of [ca?.dir, other?.dir]) if (dir) rmSync(dir, { recursive: true, force: true })
  })

  for (const driver of ['mongodb', 'mongodb7']) for (const [shape, secureContext] of Object.entries(SHAPES)) {
    it(`boots, locks, refuses a held key, frees, replays an Idempotency-Key retry and stops clean with the CA in TRUSTSTORE_* (driver ${driver}, ${shape})`, async () => {
      const out = await runApp('ok', cleanEnv({
        TLS_URL: server.tlsUrl,
        DRIVER: driver,
        SECURE_CONTEXT: secureContext,
        TRUSTSTORE_CA: Buffer.from(ca.caPem).toString('base64'),
      }))
      expect(out.error).toBeUndefined()
      expect(out.driver).toMatch(driver === 'mongodb' ? /^6\./ : /^7\./)
      expect(out.secureContextDecorated).toBe(true)
      expect(out).toMatchObject({ routeStatus: 200, locked: true, refusedWhileHeld: 409, freed: true, afterFree: 200, lockDocumentsBeforeStop: 0 })
      // once() on the same locker: an Idempotency-Key route's retry is answered with the first response.
      expect(out.idempotent).toEqual({ first: 201, retry: 201, replayed: 'true', sameBody: true, runs: 1 })
      // Known from construction, and saying where the CAs came from: derived
      // for a secureContext; Node's with TRUSTSTORE_* without one.
      expect(out.settingsAtConstruction.tls).toBe(true)
      expect(out.settingsAtConstruction.tlsCa).toMatch(secureContext === 'pass'
        ? /^derived for the client's secureContext, whose CAs cannot be read: Node's .*\+ TRUSTSTORE_\* \(1\)$/
        : /^Node's .*\+ TRUSTSTORE_\* \(1\)$/)
      // The template's readPreference 'secondary' and retryWrites false: reads stay on the primary.
      expect(out.settings).toMatchObject({ tls: true, readPreference: 'primary', retryWrites: false })
      // Nothing written to the console by the locker, and the process ended by itself.
      expect(out.logged).toEqual([])
    })
  }

  for (const [shape, secureContext] of Object.entries(SHAPES)) {
    it(`without the CA in TRUSTSTORE_* (${shape}): the app's client fails, and the first lock() rejects once, within operationTimeoutMs, saying what to pass`, async () => {
      const out = await runApp('missing-ca', cleanEnv({
        TLS_URL: server.tlsUrl,
        DRIVER: 'mongodb',
        SECURE_CONTEXT: secureContext,
        TRUSTSTORE_OTHER: Buffer.from(other.caPem).toString('base64'),
      }))
      expect(out.appClientError).toMatch(/certificate/)
      expect(out.lockError.name).toBe('MongoLocksError')
      const cause = secureContext === 'pass'
        ? /the server's certificate was signed by a CA this client does not trust; the application's client has a secureContext whose CAs cannot be read: pass the same CA as new LockManager\(collection, \{ tls: \{ ca \} \}\)/
        : /the server's TLS certificate is signed by a CA this client does not trust \(unknown issuer\)\. The manager trusts what the Node client is given \(its ca or tlsCAFile, else Node's CAs with NODE_EXTRA_CA_CERTS and TRUSTSTORE_\*\); or pass new LockManager\(collection, \{ tls: \{ ca \} \}\)/
      expect(out.lockError.message).toMatch(cause)
      // One operationTimeoutMs, not two (the constructor's warm-up and
      // lock() share one attempt), and not the driver's 30 s.
      expect(out.lockMs).toBeLessThan(OPERATION_TIMEOUT_MS + SLACK_MS)
      const lines = out.logged.filter((l) => l.text.includes('mongo-locks-native'))
      expect(lines, JSON.stringify(out.logged)).toHaveLength(1)
      expect(lines[0].text).toMatch(cause)
    })
  }

  it('a secureContext made from a CA that only the context has: the same clear rejection; with that CA as tls: { ca }, it works', async () => {
    const client = new MongoClient(server.tlsUrl, { secureContext: tls.createSecureContext({ ca: ca.caPem }) })
    const lines = []
    const logger = Object.fromEntries(['debug', 'info', 'warn', 'error'].map((level) => [level, (fields, message) => lines.push({ level, message })]))
    try {
      await client.db('admin').command({ ping: 1 }) // the app's own client trusts it
      const collection = client.db('secure-context').collection(`only-${Date.now()}`)
      const blind = new LockManager(collection, { logger })
      const started = Date.now()
      const err = await blind.lock('k').catch((e) => e)
      const ms = Date.now() - started
      await blind.close()
      expect(err).toBeInstanceOf(MongoLocksError)
      expect(err.message).toMatch(/secureContext whose CAs cannot be read: pass the same CA as new LockManager\(collection, \{ tls: \{ ca \} \}\)/)
      expect(ms).toBeLessThan(OPERATION_TIMEOUT_MS + SLACK_MS)
      await new Promise((resolve) => setTimeout(resolve, 300)) // a log line reaches JavaScript on its own
      expect(lines.filter((l) => /cannot be read/.test(l.message))).toHaveLength(1)

      await locksWith(collection, { tls: { ca: ca.caPem } }, (settings) => expect(settings.tlsCa).toMatch(/^options\.tls\.ca \(1\)/))
    } finally {
      await client.close()
    }
  })

  it('mutual TLS with the client certificate inside the secureContext: the rejection says to pass tls: { cert, key }; with them, it works', async () => {
    const secureContext = tls.createSecureContext({
      ca: ca.caPem,
      cert: readFileSync(ca.clientPemFile, 'utf8'),
      key: readFileSync(ca.clientPemFile, 'utf8'),
    })
    const client = new MongoClient(mtls.tlsUrl, { secureContext })
    try {
      await client.db('admin').command({ ping: 1 }) // the app's client has a certificate
      const collection = client.db('secure-context').collection(`mtls-${Date.now()}`)
      const blind = new LockManager(collection, { logger: false, tls: { ca: ca.caPem } })
      const err = await blind.lock('k').catch((e) => e)
      await blind.close()
      expect(err).toBeInstanceOf(MongoLocksError)
      expect(err.message).toMatch(/the server asks for a client certificate \(mutual TLS\); the application's client has a secureContext, whose certificate cannot be read: pass the same certificate and key as new LockManager\(collection, \{ tls: \{ cert, key \} \}\)/)

      const pem = readFileSync(ca.clientPemFile, 'utf8')
      await locksWith(collection, { tls: { ca: ca.caPem, cert: pem, key: pem } }, (settings) => expect(settings.tlsClientCertificate).toBe(true))
    } finally {
      await client.close()
    }
  })

  it('locker.settings is there from construction, every time', async () => {
    for (let i = 0; i < 8; i++) {
      const client = new MongoClient(server.tlsUrl, { secureContext: tls.createSecureContext({ ca: ca.caPem }), readPreference: 'secondaryPreferred', retryReads: false })
      const locker = new LockManager(client.db('secure-context').collection('settings'), { logger: false, tls: { extraCa: ca.caPem } })
      try {
        expect(locker.settings).toMatchObject({ tls: true, readPreference: 'primary', retryReads: false })
        expect(locker.settings.hosts).toEqual([`localhost:${server.tlsPort}`])
        expect(locker.settings.tlsCa).toMatch(/^derived for the client's secureContext.*\+ options\.tls\.extraCa \(1\)$/)
      } finally {
        await locker.close()
        await client.close()
      }
    }
  })
})
