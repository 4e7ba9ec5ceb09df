// Connecting wherever the application's Node client connects: the manager
// reads the client's parsed options (TLS and the CAs it trusts, credentials,
// retryWrites, appName, pool, server API…), not only its URL. Real TLS with a
// per-run private CA (openssl) and real SCRAM against FerretDB (our test build
// carries a one-line fix of its saslContinue: see scripts/install-ferretdb.sh).
// Every way runs in a process of its own, as some are process-wide.
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import path from 'node:path'
import { MongoClient } from 'mongodb'
import { startFerretDB } from '../support/ferretdb.mjs'
import { makeTestCA } from '../support/test-ca.mjs'
import { lib, runNode, root } from '../support/suite.mjs'

const { LockManager, MongoLocksError } = lib
const fixture = path.join(root, '__test__', 'fixtures', 'connect-as-app.mjs')
const USER = 'locks-app'
const PASSWORD = 'p@ss word!'

describe('connecting like the application', () => {
  let ca
  let tlsServer
  let authServer
  let env
  beforeAll(async () => {
    ca = makeTestCA()
    tlsServer = await startFerretDB({ tls: { certFile: ca.serverCertFile, keyFile: ca.serverKeyFile } })
    authServer = await startFerretDB({ auth: { username: USER, password: PASSWORD } })
    env = {
      TLS_URL: tlsServer.tlsUrl,
      TLS_PORT: String(tlsServer.tlsPort),
      CA_FILE: ca.caFile,
      OPEN_URL: tlsServer.url,
      PLAIN_URL: authServer.url,
      AUTH_URL: authServer.authUrl,
      AUTH_USER: USER,
      AUTH_PASSWORD: PASSWORD,
    }
  })
  afterAll(async () => {
    await tlsServer?.stop()
    await authServer?.stop()
  })

  const asApp = async (mode, extraEnv = {}) => {
    const run = await runNode(fixture, [mode, `connect-${mode}-${Date.now()}`], { env: { ...env, ...extraEnv }, timeoutMs: 60_000 })
    expect(run.code, run.stderr).toBe(0)
    const out = JSON.parse(run.stdout.trim().split('\n').pop())
    expect(out.error).toBeUndefined()
    expect(out).toMatchObject({ locked: true, refused: true, freed: true, lockedAfterFree: true })
    return out
  }

  describe('TLS with a private CA: every way the Node client can trust it', () => {
    it('tlsCAFile in the URL', async () => {
      const out = await asApp('url-tlsCAFile')
      expect(out.settings.tls).toBe(true)
      expect(out.settings.tlsCa).toMatch(/^tlsCAFile /)
    })
    it('ca in the client options', async () => {
      expect((await asApp('option-ca')).settings.tlsCa).toMatch(/^the client's ca option \(1\)/)
    })
    it('tls: true and tlsCAFile in the client options', async () => {
      expect((await asApp('options-tls-tlsCAFile')).settings.tlsCa).toMatch(/^tlsCAFile /)
    })
    it('a secureContext option, with the same CA given to the manager as options.tls.ca', async () => {
      expect((await asApp('secureContext-with-manager-ca')).settings.tlsCa).toMatch(/^options\.tls\.ca \(1\)/)
    })
    it('NODE_EXTRA_CA_CERTS', async () => {
      expect((await asApp('NODE_EXTRA_CA_CERTS', { NODE_EXTRA_CA_CERTS: ca.caFile })).settings.tlsCa).toMatch(/Node's/)
    })
    it('@defra/hapi-secure-context with TRUSTSTORE_* variables (a process-wide patched tls.createSecureContext), through our Hapi plugin', async () => {
      const out = await asApp('hapi-secure-context', { TRUSTSTORE_LOCKS_TEST_CA: Buffer.from(ca.caPem).toString('base64') })
      expect(out.settings.tlsCa).toMatch(/TRUSTSTORE_\* \(1\)/)
    })
    it('the same with the plugin\'s own prefix: our Hapi plugin trusts what it decorates the server with (server.customCACerts)', async () => {
      const out = await asApp('hapi-secure-context-custom-prefix', { PLATFORM_CA_LOCKS_TEST: Buffer.from(ca.caPem).toString('base64') })
      expect(out.settings.tlsCa).toMatch(/options\.tls\.extraCa \(1\)/)
      expect(out.settings.tlsCa).not.toMatch(/TRUSTSTORE/)
    })
  })

  describe('authentication (SCRAM)', () => {
    it('credentials in the URL', async () => {
      const out = await asApp('auth-in-url')
      expect(out.settings).toMatchObject({ username: USER, authSource: 'admin' })
    })
    it('credentials in the client options (auth, authSource)', async () => {
      const out = await asApp('auth-in-options')
      expect(out.settings).toMatchObject({ username: USER, authSource: 'admin' })
    })
  })

  describe('Mongoose', () => {
    it('mongoose.createConnection(…).collection(name)', async () => {
      await asApp('mongoose-connection')
    })
    it('a model\'s collection', async () => {
      await asApp('mongoose-model')
    })
  })

  describe('when the manager cannot connect, the first rejection says why', () => {
    it('an unknown issuer (a CA it was not given)', async () => {
      const client = new MongoClient(tlsServer.tlsUrl) // not connected: no CA
      const locker = new LockManager(client.db('connect').collection('why'), { uri: tlsServer.tlsUrl, serverSelectionTimeoutMs: 4000, logger: false })
      try {
        const err = await locker.lock('k').catch((e) => e)
        expect(err).toBeInstanceOf(MongoLocksError)
        expect(err.message).toMatch(/the server's TLS certificate is signed by a CA this client does not trust \(unknown issuer\)/)
        expect(err.message).toMatch(/tls: \{ ca \}/)
      } finally {
        await locker.close()
        await client.close()
      }
    })
    it('a wrong password', async () => {
      const client = new MongoClient(authServer.url, { auth: { username: USER, password: 'wrong' }, authSource: 'admin' })
      // A long selection timeout: the rejection comes at the first refused
      // login, not when the timeout runs out.
      const locker = new LockManager(client.db('connect').collection('why'), { serverSelectionTimeoutMs: 15_000, logger: false })
      try {
        const started = Date.now()
        const err = await locker.lock('k').catch((e) => e)
        expect(err).toBeInstanceOf(MongoLocksError)
        expect(err.message).toMatch(/authentication failed/i)
        expect(err.message).not.toMatch(/wrong/) // never the password
        expect(Date.now() - started).toBeLessThan(7000)
      } finally {
        await locker.close()
        await client.close()
      }
    })
  })

  describe('the client\'s options are carried (locker.settings: the Rust client\'s effective settings)', () => {
    it('retryWrites, retryReads, appName, compressors, serverApi, an explicit pool; reads stay on the primary', async () => {
      const client = new MongoClient(authServer.url, {
        auth: { username: USER, password: PASSWORD },
        authSource: 'admin',
        retryWrites: false,
        readPreference: 'secondary',
        appName: 'payments-backend',
        compressors: ['zstd', 'zlib'],
        maxPoolSize: 4,
        serverApi: { version: '1' },
      })
      const locker = new LockManager(client.db('connect').collection('carried'), { logger: false })
      try {
        const lock = await locker.lock('k')
        expect(lock).not.toBeNull()
        expect(locker.settings).toMatchObject({
          retryWrites: false,
          appName: 'payments-backend',
          compressors: ['zlib'], // zstd is not in this build: not negotiated
          maxPoolSize: 4,
          serverApiVersion: '1',
          username: USER,
          readPreference: 'primary',
        })
        expect(JSON.stringify(locker.settings)).not.toContain(PASSWORD)
        await lock.free()
      } finally {
        await locker.close()
        await client.close()
      }
    })
    it('the driver\'s default pool is not copied: ours is smaller, and idle connections close', async () => {
      const client = new MongoClient(authServer.authUrl)
      const locker = new LockManager(client.db('connect').collection('pool'), { logger: false })
      try {
        await (await locker.lock('k')).free()
        expect(locker.settings).toMatchObject({ maxPoolSize: 10, maxIdleTimeMs: 30_000 })
      } finally {
        await locker.close()
        await client.close()
      }
    })
  })

  describe('what cannot be carried is refused at construction, naming the option and what to do', () => {
    const refused = (clientOptions, pattern, managerOptions = {}) => {
      const client = new MongoClient('mongodb://127.0.0.1:1/?directConnection=true', clientOptions)
      expect(() => new LockManager(client.db('d').collection('c'), { logger: false, ...managerOptions })).toThrow(pattern)
      return client.close()
    }
    it('an OIDC callback', () => refused(
      { authMechanism: 'MONGODB-OIDC', authMechanismProperties: { OIDC_CALLBACK: async () => ({ accessToken: 'x' }) } },
      /authMechanism MONGODB-OIDC .*cannot be used by the lock manager/,
    ))
    it('tlsAllowInvalidHostnames on its own', () => refused(
      { tls: true, tlsAllowInvalidHostnames: true },
      /tlsAllowInvalidHostnames \(or checkServerIdentity\) cannot be carried on its own/,
    ))
    it('a bad options.tls', () => refused({}, /options\.tls must be an object/, { tls: 'yes' }))
  })
})
