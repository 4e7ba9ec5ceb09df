// Self-test of the TLS and authentication test infrastructure,
// with the Node driver only: __test__/support/test-ca.mjs makes a private CA, and
// __test__/support/ferretdb.mjs starts FerretDB with a TLS listener and SCRAM users.
// Starts its own servers, so it runs whatever MONGO_URL says.
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { MongoClient } from 'mongodb'
import { readFileSync, rmSync } from 'node:fs'
import { makeTestCA } from '../support/test-ca.mjs'
import { startFerretDB, wantedFerretDBBuild, FERRETDB_BIN } from '../support/ferretdb.mjs'

// Fail fast: a server that is not there should not cost 30 s of server
// selection (but leave a loaded machine time for a TLS handshake and SCRAM).
const quick = { serverSelectionTimeoutMS: 5000, connectTimeoutMS: 5000 }

async function insertAndCount(url, options = {}) {
  const client = new MongoClient(url, { ...quick, ...options })
  try {
    const collection = client.db('tls-infra-test').collection('c')
    await collection.insertOne({ at: new Date() })
    return await collection.countDocuments()
  } finally {
    await client.close()
  }
}

let ca
beforeAll(() => { ca = makeTestCA() })
afterAll(() => { if (ca) rmSync(ca.dir, { recursive: true, force: true }) })

describe('makeTestCA', () => {
  it('writes PEM files whose texts it returns', () => {
    expect(ca.caPem).toMatch(/^-----BEGIN CERTIFICATE-----/)
    expect(readFileSync(ca.caFile, 'utf8')).toBe(ca.caPem)
    expect(readFileSync(ca.serverKeyFile, 'utf8')).toMatch(/^-----BEGIN PRIVATE KEY-----/)
    const bundle = readFileSync(ca.clientPemFile, 'utf8')
    expect(bundle).toContain('-----BEGIN CERTIFICATE-----')
    expect(bundle).toContain('-----BEGIN PRIVATE KEY-----')
    const encrypted = readFileSync(ca.clientEncryptedPemFile, 'utf8')
    expect(encrypted).toContain('-----BEGIN ENCRYPTED PRIVATE KEY-----')
    expect(encrypted).not.toContain('-----BEGIN PRIVATE KEY-----')
    expect(ca.passphrase).toBeTruthy()
  })
})

describe('FerretDB with TLS', () => {
  let server
  beforeAll(async () => {
    server = await startFerretDB({ tls: { certFile: ca.serverCertFile, keyFile: ca.serverKeyFile } })
  })
  afterAll(async () => { await server?.stop() })

  it('listens with TLS beside the plain port', () => {
    expect(server.tlsPort).not.toBe(server.port)
    expect(server.tlsUrl).toBe(`mongodb://localhost:${server.tlsPort}/?directConnection=true&tls=true`)
  })

  it('accepts a client that trusts the private CA', async () => {
    expect(await insertAndCount(server.tlsUrl, { tlsCAFile: ca.caFile })).toBeGreaterThan(0)
    expect(await insertAndCount(`${server.tlsUrl}&tlsCAFile=${encodeURIComponent(ca.caFile)}`)).toBeGreaterThan(0)
  })

  it('is refused by a client that does not know the CA', async () => {
    await expect(insertAndCount(server.tlsUrl)).rejects.toThrow(/certificate/i)
  })

  it('keeps the plain port plain', async () => {
    expect(await insertAndCount(server.url)).toBeGreaterThan(0)
  })
})

describe('FerretDB with TLS and a CA file (mutual TLS)', () => {
  let server
  beforeAll(async () => {
    server = await startFerretDB({ tls: { certFile: ca.serverCertFile, keyFile: ca.serverKeyFile, caFile: ca.caFile } })
  })
  afterAll(async () => { await server?.stop() })

  it('requires a client certificate signed by the CA', async () => {
    await expect(insertAndCount(server.tlsUrl, { tlsCAFile: ca.caFile })).rejects.toThrow(/certificate required/)
    expect(await insertAndCount(server.tlsUrl, { tlsCAFile: ca.caFile, tlsCertificateKeyFile: ca.clientPemFile })).toBeGreaterThan(0)
  })

  it('takes the encrypted client key with its passphrase', async () => {
    const options = { tlsCAFile: ca.caFile, tlsCertificateKeyFile: ca.clientEncryptedPemFile, tlsCertificateKeyFilePassword: ca.passphrase }
    expect(await insertAndCount(server.tlsUrl, options)).toBeGreaterThan(0)
  })
})

describe('FerretDB with SCRAM authentication', () => {
  const auth = { username: 'locker', password: 'p@ss:w/rd%' }
  let server
  beforeAll(async () => {
    server = await startFerretDB({ auth, tls: { certFile: ca.serverCertFile, keyFile: ca.serverKeyFile } })
  })
  afterAll(async () => { await server?.stop() })

  it('is built with the skipEmptyExchange patch', () => {
    expect(readFileSync(`${FERRETDB_BIN}.patches`, 'utf8').trim()).toBe(wantedFerretDBBuild())
  })

  it('authenticates with the right password (SCRAM-SHA-256 and SCRAM-SHA-1)', async () => {
    expect(server.authUrl).toContain(`${encodeURIComponent(auth.username)}:${encodeURIComponent(auth.password)}@127.0.0.1:${server.port}/`)
    expect(server.authUrl).toContain('authSource=admin')
    expect(await insertAndCount(server.authUrl)).toBeGreaterThan(0)
    expect(await insertAndCount(server.authUrl, { authMechanism: 'SCRAM-SHA-1' })).toBeGreaterThan(0)
  })

  it('authenticates over TLS', async () => {
    expect(await insertAndCount(server.tlsAuthUrl, { tlsCAFile: ca.caFile })).toBeGreaterThan(0)
  })

  it('refuses a wrong password', async () => {
    const wrong = server.authUrl.replace(encodeURIComponent(auth.password), 'wrong')
    await expect(insertAndCount(wrong)).rejects.toThrow(/Authentication failed/)
  })

  it('refuses commands without credentials', async () => {
    await expect(insertAndCount(server.url)).rejects.toThrow(/requires authentication/)
  })

  it('keeps the user over a restart of the same data directory', async () => {
    await server.restart()
    expect(await insertAndCount(server.authUrl)).toBeGreaterThan(0)
  })
})
