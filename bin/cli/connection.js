'use strict'
// Where the locks are and the connection to them: the connection string,
// the application's `mongodb` driver, a connection that fails at once where
// nothing listens and within --timeout where a server does not answer, and
// the server's clock.

const { NAME, CliError, EXIT_SERVER, usageError, serverError } = require('./errors')
const { DEFAULT_COLLECTION } = require('./usage')

const SCHEME = /^mongodb(\+srv)?:\/\//

/** The connection string with its password hidden. */
function redact(uri) {
  return uri.replace(/^(mongodb(?:\+srv)?:\/\/)([^@/]*)@/, (all, scheme, credentials) => {
    const colon = credentials.indexOf(':')
    return `${scheme}${colon === -1 ? credentials : `${credentials.slice(0, colon)}:****`}@`
  })
}

/** The hosts of a connection string, for messages ("db1:27017,db2:27017"). */
function hostsOf(uri) {
  const rest = uri.replace(SCHEME, '')
  const authority = rest.split(/[/?]/, 1)[0]
  return authority.slice(authority.lastIndexOf('@') + 1)
}

/** The database in the connection string's path, or undefined. */
function databaseOf(uri) {
  const rest = uri.replace(SCHEME, '')
  const slash = rest.indexOf('/')
  if (slash === -1) return undefined
  const pathPart = rest.slice(slash + 1).split('?', 1)[0]
  if (pathPart === '') return undefined
  try {
    return decodeURIComponent(pathPart)
  } catch {
    return pathPart
  }
}

/** Where to connect: { uri, source, hosts, database, collection }, or a usage error. */
function where(values, env) {
  const fromFlag = values.uri !== undefined
  const uri = fromFlag ? values.uri : env.MONGO_URL
  const source = fromFlag ? '--uri' : 'MONGO_URL'
  if (uri === undefined || uri === '') throw usageError('no server given: pass --uri mongodb://HOST/DB or set MONGO_URL')
  if (!SCHEME.test(uri)) throw usageError(`${source} must start with mongodb:// or mongodb+srv://, got ${JSON.stringify(redact(uri))}`)
  const database = values.db ?? databaseOf(uri)
  if (database === undefined || database === '') {
    throw usageError(`no database given: pass --db NAME (the connection string of ${source} has no database in its path)`)
  }
  const collection = values.collection ?? DEFAULT_COLLECTION
  if (collection === '') throw usageError('--collection needs a name')
  return { uri, source, hosts: hostsOf(uri), database, collection }
}

/** The application's `mongodb`: the one next to this package (a peer dependency), else the one of the current directory. */
function loadDriver() {
  try {
    return require('mongodb')
  } catch (err) {
    if (err.code !== 'MODULE_NOT_FOUND') throw err
  }
  try {
    return require(require.resolve('mongodb', { paths: [process.cwd()] }))
  } catch {
    throw new CliError(EXIT_SERVER, 'the `mongodb` package is not installed (it is a peer dependency, as for mongo-locks): npm install mongodb')
  }
}

/** `promise`, or a server error once `ms` pass without an answer. */
function bounded(promise, ms, what) {
  let timer
  const timeout = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new CliError(EXIT_SERVER, `${what}: no answer within ${ms / 1000}s`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

// --- Failing fast where nothing listens ---

/** Network errors that waiting does not mend: nothing listens, or no such host. */
const HOPELESS = /\b(ECONNREFUSED|ENOTFOUND)\b/
/** Refusals in a row that count: one may be a server restarting (the driver retries every 0.5 s). */
const REFUSALS = 2

function hopelessCode(failure) {
  const text = `${failure?.cause?.code ?? ''} ${failure?.code ?? ''} ${failure?.message ?? ''}`
  return HOPELESS.exec(text)?.[1] ?? null
}

/**
 * Watches the driver's heartbeats and rejects once every server it knows of
 * has refused the connection (or has a name that does not resolve) twice in
 * a row: server selection would only retry them until --timeout. A server
 * that accepts the connection and is slow to answer is never given up on
 * here. `stop()` detaches.
 */
function refusalWatch(client) {
  const streak = new Map() // address -> { count, code, message }
  let servers = []
  let reject
  const failed = new Promise((resolve, rej) => { reject = rej })
  failed.catch(() => {})
  const check = () => {
    if (servers.length === 0) return
    const all = servers.map((a) => streak.get(a))
    if (!all.every((s) => s && s.count >= REFUSALS)) return
    const refused = all.every((s) => s.code === 'ECONNREFUSED')
    const details = [...new Set(all.map((s) => s.message))].join('; ')
    const why = refused
      ? 'nothing listens there (is the server running, and are the host and port right?)'
      : all.every((s) => s.code === 'ENOTFOUND')
        ? 'no such host (is the host name right?)'
        : 'no server can be connected to'
    reject(Object.assign(new Error(`${details}: ${why}`), { hopeless: true }))
  }
  const onTopology = (event) => {
    servers = [...event.newDescription.servers.keys()]
    check()
  }
  const onFailed = (event) => {
    const code = hopelessCode(event.failure)
    if (!code) {
      streak.delete(event.connectionId)
      return
    }
    const previous = streak.get(event.connectionId)
    const message = String(event.failure?.message ?? code).split('\n')[0]
    streak.set(event.connectionId, { count: (previous?.count ?? 0) + 1, code, message })
    check()
  }
  const onSucceeded = (event) => streak.delete(event.connectionId)
  client.on('topologyDescriptionChanged', onTopology)
  client.on('serverHeartbeatFailed', onFailed)
  client.on('serverHeartbeatSucceeded', onSucceeded)
  return {
    failed,
    stop() {
      client.off('topologyDescriptionChanged', onTopology)
      client.off('serverHeartbeatFailed', onFailed)
      client.off('serverHeartbeatSucceeded', onSucceeded)
    },
  }
}

/** A connected client and the collection, or a clear error: at once where nothing listens, else within the timeout. */
async function connect(to, timeoutMs) {
  const { MongoClient } = loadDriver()
  let client
  try {
    client = new MongoClient(to.uri, {
      serverSelectionTimeoutMS: timeoutMs,
      connectTimeoutMS: timeoutMs,
      socketTimeoutMS: timeoutMs * 2,
      maxPoolSize: 2,
      appName: `${NAME} cli`,
    })
  } catch (err) {
    const message = String(err.message).split('\n')[0].split(to.uri).join(redact(to.uri))
    throw usageError(`${to.source} is not a valid connection string: ${message}`)
  }
  const refusals = refusalWatch(client)
  try {
    await bounded(Promise.race([client.connect(), refusals.failed]), timeoutMs + 2000, `cannot reach the server at ${to.hosts} within ${timeoutMs / 1000}s`)
  } catch (err) {
    client.close().catch(() => {})
    if (err.hopeless) throw new CliError(EXIT_SERVER, `cannot reach the server at ${to.hosts}: ${err.message}`)
    throw serverError(`cannot reach the server at ${to.hosts} within ${timeoutMs / 1000}s`, err)
  } finally {
    refusals.stop()
  }
  const db = client.db(to.database)
  return { client, db, collection: db.collection(to.collection) }
}

/**
 * The server's time now, in ms: `localTime` of `hello` (isMaster on servers
 * too old for hello); this machine's clock if the server does not say.
 */
async function serverClock(db, timeoutMs) {
  const ask = (command) => bounded(db.admin().command(command), timeoutMs, 'reading the server time')
  let reply
  try {
    reply = await ask({ hello: 1 })
  } catch (err) {
    if (err && (err.code === 59 || err.codeName === 'CommandNotFound')) reply = await ask({ isMaster: 1 })
    else throw err
  }
  const t = reply && reply.localTime
  if (t instanceof Date && !Number.isNaN(t.getTime())) return { now: t.getTime(), clock: 'server' }
  return { now: Date.now(), clock: 'local' }
}

module.exports = { where, connect, bounded, serverClock }
