// What a misconfigured or failing deployment is told, with the settings
// users actually have: no timeout anywhere (the driver's 30 s server
// selection, our 10 s operation timeout). Each cause (nothing listening, a
// server that never answers, an untrusted CA, a certificate for another
// name, a wrong password, a secureContext CA the manager cannot read, the
// server restarting under held locks) on each way to make a manager, all
// at once: each must name its cause, within one operationTimeoutMs, and
// be logged once however many calls fail on it.
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import net from 'node:net'
import tls from 'node:tls'
import { createRequire } from 'node:module'
import { MongoClient } from 'mongodb'
import { startFerretDB, freePort } from '../support/ferretdb.mjs'
import { makeTestCA } from '../support/test-ca.mjs'
import { lib, eventually, sleep } from '../support/suite.mjs'

const require = createRequire(import.meta.url)
const Hapi = require('@hapi/hapi')
const { LockManager, MongoLocksError } = lib

/** The documented bound on a call that cannot use the server (docs/guarantees.md). */
const OPERATION_TIMEOUT_MS = 10_000
/** Room for a loaded 2-core machine: timers and the event loop run late. */
const SLACK_MS = 4_000

/** A logger that keeps what it is given, as hapi-pino's would print it. */
function captureLogger() {
  const lines = []
  const at = (level) => (fields, message) => lines.push({ level, message: typeof fields === 'string' ? fields : message })
  return { lines, logger: { error: at('error'), warn: at('warn'), info: at('info'), debug: at('debug'), trace: at('trace') } }
}

/**
 * The lines at warn or above that carry `cause`, once they have arrived:
 * a log line reaches JavaScript on its own, soon after the rejection.
 */
async function loud(lines, cause) {
  const matching = () => lines.filter((l) => (l.level === 'error' || l.level === 'warn') && cause.test(l.message))
  await eventually(() => matching().length > 0, 3000)
  await sleep(300)
  return matching()
}

/**
 * Every way to make a manager, as a failing deployment meets it: `fail(target)`
 * resolves to `{ error, ms, lines }`, where `error` is what the application
 * sees first (the rejected lock(), connect() or plugin registration), after
 * three lock() calls at once where there is a manager to call.
 */
const KINDS = {
  'new LockManager(collection)': async (target) => {
    const { lines, logger } = captureLogger()
    const client = target.client()
    const locker = new LockManager(client.db('app').collection('mongo-locks'), { logger })
    try {
      return { ...(await threeLocks(locker)), lines }
    } finally {
      await locker.close().catch(() => {})
      await client.close()
    }
  },
  'LockManager.connect(uri)': async (target) => {
    if (!target.url) return null
    const { lines, logger } = captureLogger()
    const started = performance.now()
    const error = await LockManager.connect(target.url, { database: 'app', logger }).then(
      (locker) => { locker.close(); return null },
      (e) => e,
    )
    return { error, ms: performance.now() - started, lines }
  },
  'the Hapi plugin with mongoUrl': async (target) => {
    if (!target.url) return null
    const { lines, logger } = captureLogger()
    const server = Hapi.server()
    server.decorate('server', 'logger', logger)
    const started = performance.now()
    const error = await server.register({ plugin: lib.hapiPlugin, options: { mongoUrl: target.url, databaseName: 'app' } }).then(() => null, (e) => e)
    const ms = performance.now() - started
    await server.stop()
    return { error, ms, lines }
  },
  'the Hapi plugin with collection': async (target) => {
    const { lines, logger } = captureLogger()
    const client = target.client()
    const server = Hapi.server()
    server.decorate('server', 'logger', logger)
    await server.register({ plugin: lib.hapiPlugin, options: { collection: client.db('app').collection('mongo-locks') } })
    try {
      return { ...(await threeLocks(server.locker)), lines }
    } finally {
      await server.stop().catch(() => {})
      await client.close()
    }
  },
}

/** Three lock() calls at once: the first error, and how long the slowest took. */
async function threeLocks(locker) {
  const started = performance.now()
  const outcomes = await Promise.all(['a', 'b', 'c'].map((k) => locker.lock(k).then((v) => v, (e) => e)))
  const ms = performance.now() - started
  for (const o of outcomes) expect(o).toBeInstanceOf(MongoLocksError)
  return { error: outcomes[0], ms, errors: outcomes }
}

describe('every failure says what went wrong, with no timeout configured', () => {
  const targets = {}
  const servers = []
  const cleanups = []
  beforeAll(async () => {
    const ca = makeTestCA()
    const otherName = makeTestCA(undefined, { serverNames: 'DNS:db.elsewhere.example' })
    const auth = { username: 'app-user', password: 'right-password' }
    const [tlsServer, mtlsServer, wrongName, authServer, otherSet] = await Promise.all([
      startFerretDB({ tls: { certFile: ca.serverCertFile, keyFile: ca.serverKeyFile } }),
      startFerretDB({ tls: { certFile: ca.serverCertFile, keyFile: ca.serverKeyFile, caFile: ca.caFile } }),
      startFerretDB({ tls: { certFile: otherName.serverCertFile, keyFile: otherName.serverKeyFile } }),
      startFerretDB({ auth }),
      startFerretDB({ replSetName: 'other-set' }),
    ])
    servers.push(tlsServer, mtlsServer, wrongName, authServer, otherSet)

    // A server that accepts connections and never says a word: to the
    // driver, the same as an address whose packets are dropped.
    const sockets = new Set()
    const silent = net.createServer((socket) => {
      sockets.add(socket)
      socket.on('error', () => {})
    })
    await new Promise((resolve) => silent.listen(0, '127.0.0.1', resolve))
    cleanups.push(() => new Promise((resolve) => {
      silent.close(resolve)
      for (const socket of sockets) socket.destroy()
    }))
    const silentUrl = `mongodb://127.0.0.1:${silent.address().port}/?directConnection=true`

    const refusedUrl = `mongodb://127.0.0.1:${await freePort()}/?directConnection=true`
    const wrongPasswordUrl = authServer.authUrl.replace(':right-password@', ':wrong-password@')
    const wrongNameUrl = `${wrongName.tlsUrl}&tlsCAFile=${encodeURIComponent(otherName.caFile)}`
    const urlTarget = (url, options) => ({ url, client: () => new MongoClient(url, options) })

    Object.assign(targets, {
      'nothing listening (connection refused)': {
        ...urlTarget(refusedUrl),
        cause: /could not reach a MongoDB server: nothing accepts connections at that address \(connection refused\)/,
      },
      'a host name that does not resolve': {
        ...urlTarget('mongodb://no-such-host.invalid:27017/?directConnection=true'),
        cause: /could not reach a MongoDB server: the host name does not resolve \(check the host in the connection string, and DNS\) \(no-such-host\.invalid:27017: /,
      },
      'a server that never answers': {
        ...urlTarget(silentUrl),
        cause: /could not reach a MongoDB server: no answer from 127\.0\.0\.1:\d+: nothing answers at that address/,
      },
      'a certificate from a CA the client does not trust': {
        ...urlTarget(tlsServer.tlsUrl),
        cause: /signed by a CA this client does not trust \(unknown issuer\)/,
      },
      'a certificate for another host name': {
        ...urlTarget(wrongNameUrl),
        cause: /the server's TLS certificate does not name the host connected to/,
      },
      'a client certificate the server requires, not sent': {
        ...urlTarget(`${mtlsServer.tlsUrl}&tlsCAFile=${encodeURIComponent(ca.caFile)}`),
        cause: /the server asks for a client certificate \(mutual TLS\) and this client sent none/,
      },
      'a server of another replica set': {
        ...urlTarget(otherSet.url.replace('replicaSet=other-set', 'replicaSet=rs0')),
        cause: /no server of replica set "rs0": 127\.0\.0\.1:\d+ is a member of replica set "other-set" \(check replicaSet in the connection string\)/,
      },
      'a wrong password': {
        ...urlTarget(wrongPasswordUrl),
        cause: /could not log in: authentication failed: check the user, password, authSource and mechanism \(user "app-user", authSource "admin", mechanism /,
        secret: 'wrong-password',
      },
      "the application's secureContext CA, which the manager cannot read": {
        // The app's own client works (its context trusts the CA); there is
        // no connection string that could carry the context.
        client: () => new MongoClient(tlsServer.tlsUrl, { secureContext: tls.createSecureContext({ ca: ca.caPem }) }),
        cause: /secureContext whose CAs cannot be read: pass the same CA as new LockManager\(collection, \{ tls: \{ ca \} \}\)/,
      },
    })
  }, 60_000)
  afterAll(async () => {
    await Promise.all([...servers.map((s) => s.stop()), ...cleanups.map((c) => c())])
  })

  const causes = [
    'nothing listening (connection refused)',
    'a host name that does not resolve',
    'a server that never answers',
    'a certificate from a CA the client does not trust',
    'a certificate for another host name',
    'a client certificate the server requires, not sent',
    'a server of another replica set',
    'a wrong password',
    "the application's secureContext CA, which the manager cannot read",
  ]
  for (const cause of causes) {
    for (const [kind, fail] of Object.entries(KINDS)) {
      it.concurrent(`${cause}: ${kind}`, async () => {
        const target = targets[cause]
        const out = await fail(target)
        if (out === null) return // no connection string carries this cause
        const { error, ms, lines } = out
        expect(error).toBeInstanceOf(MongoLocksError)
        expect(error.message).toMatch(target.cause)
        expect(error.message).not.toMatch(/no reply from the server/)
        if (target.secret) expect(error.message).not.toContain(target.secret)
        expect(ms, error.message).toBeLessThan(OPERATION_TIMEOUT_MS + SLACK_MS)
        // Said once: the warm-up and three calls share one cause, one line.
        expect(await loud(lines, target.cause), JSON.stringify(lines, null, 1)).toHaveLength(1)
        for (const line of lines) if (target.secret) expect(line.message).not.toContain(target.secret)
      }, 60_000)
    }
  }
})

/** A manager of each kind on `url`, holding the key 'held'; `stop()` closes it the way its kind closes. */
async function holdingManagers(url) {
  return Promise.all(Object.keys(KINDS).map(async (kind) => {
    const { lines, logger } = captureLogger()
    const database = `held-${kind.replace(/\W+/g, '-')}`
    let locker
    let close
    let client
    if (kind === 'new LockManager(collection)') {
      client = await MongoClient.connect(url)
      locker = new LockManager(client.db(database).collection('mongo-locks'), { logger })
      close = () => locker.close()
    } else if (kind === 'LockManager.connect(uri)') {
      locker = await LockManager.connect(url, { database, logger })
      close = () => locker.close()
    } else {
      client = kind.endsWith('collection') ? await MongoClient.connect(url) : null
      const hapi = Hapi.server()
      hapi.decorate('server', 'logger', logger)
      const options = client ? { collection: client.db(database).collection('mongo-locks') } : { mongoUrl: url, databaseName: database }
      await hapi.register({ plugin: lib.hapiPlugin, options })
      locker = hapi.locker
      close = () => hapi.stop()
    }
    const held = await locker.lock('held')
    expect(held).not.toBeNull()
    return { kind, locker, held, lines, close, stop: async () => { await close(); await client?.close(true) } }
  }))
}

describe('close() with held locks and the server gone, with no timeout configured', () => {
  let server
  beforeAll(async () => { server = await startFerretDB() }, 60_000)
  afterAll(async () => { await server?.stop() })

  it('each kind of manager settles within one operationTimeoutMs, and its locks read as not held', async () => {
    const made = await holdingManagers(server.url)
    await server.halt()
    await Promise.all(made.map(async (m) => {
      const started = performance.now()
      const outcome = await m.close().then(() => undefined, (e) => e)
      const ms = performance.now() - started
      // Freeing failed (the server is gone): said, or swallowed by hapi's stop.
      expect(outcome === undefined || outcome instanceof MongoLocksError, m.kind).toBe(true)
      expect(ms, `${m.kind}: ${outcome?.message}`).toBeLessThan(OPERATION_TIMEOUT_MS + SLACK_MS)
      expect(m.held.locked, m.kind).toBe(false)
    }))
    await Promise.all(made.map((m) => m.stop().catch(() => {})))
  }, 60_000)
})

describe('the server restarting under held locks, with no timeout configured', () => {
  let server
  beforeAll(async () => { server = await startFerretDB() }, 60_000)
  afterAll(async () => { await server?.stop() })

  it('each kind of manager: lock() says the server is unreachable, within one operationTimeoutMs, said once; the held lock is kept through a short outage', async () => {
    const made = await holdingManagers(server.url)
    try {
      await server.halt()
      const cause = /could not reach a MongoDB server: nothing accepts connections at that address \(connection refused\)/
      const outcomes = await Promise.all(made.map(async (m) => ({ m, ...(await threeLocks(m.locker)) })))
      for (const { m, error, ms } of outcomes) {
        expect(error.message, m.kind).toMatch(/^mongo-locks-native: (inserting the lock document|connecting) failed: /)
        expect(error.message, m.kind).toMatch(cause)
        expect(ms, `${m.kind}: ${error.message}`).toBeLessThan(OPERATION_TIMEOUT_MS + SLACK_MS)
        expect(await loud(m.lines, cause), `${m.kind}: ${JSON.stringify(m.lines, null, 1)}`).toHaveLength(1)
      }
      await server.restart()
      // Back: the held locks were kept (the outage was well under the
      // default 60 s ttl), and lock() works again.
      for (const m of made) {
        expect(m.held.locked, m.kind).toBe(true)
        const again = await m.locker.lock('after')
        expect(again, m.kind).not.toBeNull()
        await again.free()
        expect(m.lines.some((l) => l.level === 'info' && /the server answers again/.test(l.message)), m.kind).toBe(true)
      }
    } finally {
      await Promise.all(made.map((m) => m.stop().catch(() => {})))
    }
  }, 120_000)
})
