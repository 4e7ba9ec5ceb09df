#!/usr/bin/env node
'use strict'
// `npx mongo-locks-native …`: see and operate the locks of a collection in
// production: list, show, watch, unlock. It reads the documents directly
// with the application's `mongodb` driver (a peer dependency of the
// package), so it needs neither the Rust addon nor a LockManager, and it
// shows locks written by stock mongo-locks as well as by this package.
//
// Exit status: 0 done; 1 the server (unreachable, silent, an error it
// returned); 2 bad arguments, or an unlock that was not confirmed; 3 no lock
// on that key.

const { parseArgs } = require('node:util')
const readline = require('node:readline')

const NAME = 'mongo-locks-native'
const DEFAULT_COLLECTION = 'mongo-locks'
const DEFAULT_TIMEOUT_S = 5
const DEFAULT_INTERVAL_S = 1
const UNKNOWN_HOLDER = 'unknown (mongo-locks or older)'

const EXIT_OK = 0
const EXIT_SERVER = 1
const EXIT_USAGE = 2
const EXIT_NOT_LOCKED = 3

const USAGE = `Usage: ${NAME} <command> [options]

See and operate the locks that mongo-locks-native (and mongo-locks) keep in MongoDB.

Commands:
  list                 the locks, by key: key, holder, held for, expires in, fencing token
  show KEY             everything about the lock on KEY
  watch                the list, redrawn every --interval seconds; q or Ctrl-C quits
  unlock KEY --force   delete the lock on KEY, after asking (not asked with --yes)
  help                 this text

Connection:
  --uri URI            the connection string (default: $MONGO_URL)
  --db NAME            the database (default: the database in the URI's path)
  --collection NAME    the locks' collection (default: ${DEFAULT_COLLECTION})
  --timeout SECONDS    give up on a server that cannot be reached or does not
                       answer after this long (default: ${DEFAULT_TIMEOUT_S})

Options:
  --json               list, show: JSON (ISO dates, durations in ms, the server time)
  --json-key JSON      show, unlock: a key that is not a string, as JSON, e.g. '["org",7]'
  --interval SECONDS   watch: time between refreshes (default: ${DEFAULT_INTERVAL_S})
  --force              unlock: required, as its holder may still be working under the lock
  --yes, -y            unlock: delete without asking
  --help, -h           this text
  --version, -V        the version

KEY is a string key, as given to lock(); put -- before a key that starts with "-".
Times are measured on the server's clock (read with hello), not this machine's.

Exit status: 0 done; 1 server or connection error; 2 bad arguments, or an
unlock not confirmed; 3 no lock on that key.

Examples:
  MONGO_URL='mongodb://db.internal:27017/payments' npx ${NAME} list
  npx ${NAME} show bank-details-42 --uri mongodb://localhost:27017 --db payments
  npx ${NAME} unlock bank-details-42 --force
`

/** An error that ends the command with one line on stderr and an exit status. */
class CliError extends Error {
  constructor(exitCode, message) {
    super(message)
    this.exitCode = exitCode
  }
}
const usageError = (message) => new CliError(EXIT_USAGE, message)

// --- Arguments ---

const OPTIONS = {
  uri: { type: 'string' },
  db: { type: 'string' },
  collection: { type: 'string' },
  timeout: { type: 'string' },
  json: { type: 'boolean' },
  'json-key': { type: 'string' },
  interval: { type: 'string' },
  force: { type: 'boolean' },
  yes: { type: 'boolean', short: 'y' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'V' },
}
const COMMANDS = ['list', 'show', 'watch', 'unlock', 'help']
const COMMON = ['uri', 'db', 'collection', 'timeout', 'help', 'version']
/** The options each command takes, beside the common ones. */
const COMMAND_OPTIONS = {
  list: ['json'],
  show: ['json', 'json-key'],
  watch: ['interval'],
  unlock: ['json-key', 'force', 'yes'],
  help: [],
}

/** parseArgs' errors, as one line naming the option. */
function argumentError(err) {
  const option = /'(-[^' ]+)/.exec(err.message)?.[1]
  switch (err.code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      if (option && !option.startsWith('--')) return usageError(`unknown option ${option} (see --help; put -- before a KEY that starts with "-")`)
      return usageError(`unknown option ${option ?? err.message} (see --help)`)
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE':
      if (/argument missing/.test(err.message)) return usageError(`${option} needs a value (see --help)`)
      if (/ambiguous/.test(err.message)) return usageError(`${option} needs a value; to give one that starts with "-", write ${option}=VALUE`)
      return usageError(`${option ?? 'an option'} does not take a value (see --help)`)
    default:
      return usageError(`${err.message} (see --help)`)
  }
}

/** A positive number of seconds from `--name`, in ms. */
function seconds(values, name, fallback, min) {
  const text = values[name]
  if (text === undefined) return fallback * 1000
  const n = Number(text)
  if (text.trim() === '' || !Number.isFinite(n) || n < min || n > 86_400) {
    throw usageError(`--${name} takes a number of seconds (at least ${min}), got ${JSON.stringify(text)}`)
  }
  return Math.round(n * 1000)
}

/** What the command line asks for: { command, values, key?, keyLabel?, … } or a usage error. */
function parseCommandLine(argv) {
  let parsed
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true })
  } catch (err) {
    throw argumentError(err)
  }
  const { values, positionals } = parsed
  if (values.version) return { command: 'version' }
  const command = positionals[0]
  if (values.help || command === undefined || command === 'help') return { command: 'help' }
  if (!COMMANDS.includes(command)) {
    throw usageError(`unknown command ${JSON.stringify(command)}: expected one of ${COMMANDS.join(', ')} (see --help)`)
  }
  const allowed = new Set([...COMMON, ...COMMAND_OPTIONS[command]])
  for (const name of Object.keys(values)) {
    if (!allowed.has(name)) throw usageError(`${command} does not take --${name} (see --help)`)
  }
  const request = { command, values }
  const rest = positionals.slice(1)
  if (command === 'show' || command === 'unlock') {
    if (rest.length > 1) throw usageError(`${command} takes one KEY, got ${rest.length}: ${rest.map((k) => JSON.stringify(k)).join(' ')} (quote a key with spaces)`)
    if (rest.length === 1 && values['json-key'] !== undefined) throw usageError(`${command} takes KEY or --json-key, not both`)
    if (rest.length === 0 && values['json-key'] === undefined) throw usageError(`${command} needs a KEY (or --json-key JSON for a key that is not a string)`)
    if (rest.length === 1) {
      request.key = rest[0]
    } else {
      try {
        request.key = JSON.parse(values['json-key'])
      } catch (err) {
        throw usageError(`--json-key is not valid JSON (${err.message}): ${values['json-key']}`)
      }
      if (request.key === null || typeof request.key === 'boolean') throw usageError(`--json-key ${values['json-key']} is not a key lock() accepts`)
    }
    // Stored as lock() stores it: arrays wrapped, as mongo-locks does.
    request.action = Array.isArray(request.key) ? { _key_array: request.key } : request.key
    request.keyLabel = keyText(request.action)
  } else if (rest.length > 0) {
    throw usageError(`${command} takes no KEY, got ${rest.map((k) => JSON.stringify(k)).join(' ')}`)
  }
  if (command === 'unlock' && !values.force) {
    throw usageError(`unlock needs --force: the lock's holder may still be working under it (see --help)`)
  }
  request.timeoutMs = seconds(values, 'timeout', DEFAULT_TIMEOUT_S, 0.1)
  request.intervalMs = seconds(values, 'interval', DEFAULT_INTERVAL_S, 0.1)
  return request
}

// --- Connection ---

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
function target(values, env) {
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

/** A driver error as a one-line CliError. */
function serverError(what, err) {
  if (err instanceof CliError) return err
  const message = String(err && err.message ? err.message : err).split('\n')[0]
  return new CliError(EXIT_SERVER, `${what}: ${message}`)
}

/** A connected client and the collection, or a clear error within the timeout. */
async function connect(where, timeoutMs) {
  const { MongoClient } = loadDriver()
  let client
  try {
    client = new MongoClient(where.uri, {
      serverSelectionTimeoutMS: timeoutMs,
      connectTimeoutMS: timeoutMs,
      socketTimeoutMS: timeoutMs * 2,
      maxPoolSize: 2,
      appName: `${NAME} cli`,
    })
  } catch (err) {
    const message = String(err.message).split('\n')[0].split(where.uri).join(redact(where.uri))
    throw usageError(`${where.source} is not a valid connection string: ${message}`)
  }
  const what = `cannot reach the server at ${where.hosts} within ${timeoutMs / 1000}s`
  try {
    await bounded(client.connect(), timeoutMs + 2000, what)
  } catch (err) {
    client.close().catch(() => {})
    throw serverError(what, err)
  }
  const db = client.db(where.database)
  return { client, db, collection: db.collection(where.collection) }
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

// --- Locks as shown ---

const collator = new Intl.Collator('en', { numeric: true })

/** The key as the application gave it to lock(): arrays unwrapped from { _key_array }. */
function userKey(action) {
  if (action && typeof action === 'object' && !Array.isArray(action)) {
    const fields = Object.keys(action)
    if (fields.length === 1 && fields[0] === '_key_array' && Array.isArray(action._key_array)) return action._key_array
  }
  return action
}

/** The key as text: a string as it is, anything else as JSON. */
function keyText(action) {
  const key = userKey(action)
  if (typeof key === 'string') return key
  try {
    return JSON.stringify(key) ?? String(key)
  } catch {
    return String(key)
  }
}

const validDate = (d) => (d instanceof Date && !Number.isNaN(d.getTime()) ? d : null)

/** A fencing token as a JSON number (a string if too large for one). */
function tokenValue(t) {
  if (t === undefined || t === null) return null
  if (typeof t === 'number') return t
  if (typeof t === 'bigint') return Number.isSafeInteger(Number(t)) ? Number(t) : String(t)
  if (typeof t === 'object' && typeof t.toString === 'function') {
    const text = t.toString()
    return Number.isSafeInteger(Number(text)) ? Number(text) : text
  }
  return String(t)
}

function idText(id) {
  if (id && typeof id.toHexString === 'function') return id.toHexString()
  return typeof id === 'string' ? id : JSON.stringify(id)
}

/** A document seen at server time `now`. */
function describeLock(doc, now) {
  const createdAt = validDate(doc.createdAt)
  const refreshedAt = validDate(doc.refreshedAt)
  const expiresAt = validDate(doc.expiresAt)
  const expiresInMs = expiresAt ? expiresAt.getTime() - now : null
  return {
    key: userKey(doc.action),
    keyText: keyText(doc.action),
    action: doc.action,
    _id: idText(doc._id),
    holder: doc.holder && typeof doc.holder === 'object' ? doc.holder : null,
    createdAt,
    refreshedAt,
    expiresAt,
    heldForMs: createdAt ? now - createdAt.getTime() : null,
    refreshedAgoMs: refreshedAt ? now - refreshedAt.getTime() : null,
    expiresInMs,
    expired: expiresInMs !== null && expiresInMs <= 0,
    fencingToken: tokenValue(doc.fencingToken),
  }
}

/** The JSON form of a described lock. */
function lockJson(lock) {
  return {
    key: lock.key,
    action: lock.action,
    _id: lock._id,
    holder: lock.holder,
    createdAt: lock.createdAt && lock.createdAt.toISOString(),
    refreshedAt: lock.refreshedAt && lock.refreshedAt.toISOString(),
    expiresAt: lock.expiresAt && lock.expiresAt.toISOString(),
    heldForMs: lock.heldForMs,
    expiresInMs: lock.expiresInMs,
    expired: lock.expired,
    fencingToken: lock.fencingToken,
  }
}

/** "12s", "3m05s", "2h07m", "3d04h". */
function duration(ms) {
  const s = Math.floor(Math.max(0, ms) / 1000)
  const pad = (n) => String(n).padStart(2, '0')
  if (s < 60) return `${s}s`
  if (s < 3600) return `${Math.floor(s / 60)}m${pad(s % 60)}s`
  if (s < 86_400) return `${Math.floor(s / 3600)}h${pad(Math.floor(s / 60) % 60)}m`
  return `${Math.floor(s / 86_400)}d${pad(Math.floor(s / 3600) % 24)}h`
}

const heldFor = (lock) => (lock.heldForMs === null ? '?' : duration(lock.heldForMs))
const expiresIn = (lock) => {
  if (lock.expiresInMs === null) return '?'
  return lock.expiresInMs > 0 ? duration(lock.expiresInMs) : `expired ${duration(-lock.expiresInMs)} ago`
}

/** "billing-api on web-3 (pid 4711)", or UNKNOWN_HOLDER for documents without `holder`. */
function holderText(holder) {
  if (!holder) return UNKNOWN_HOLDER
  const where = `${holder.host ?? '?'} (pid ${holder.pid ?? '?'})`
  return holder.app ? `${holder.app} on ${where}` : where
}

/** Rows as aligned columns. */
function table(header, rows) {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)))
  const line = (cells) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]))).join('  ')
  return [line(header), ...rows.map(line)]
}

function listLines(locks) {
  return table(
    ['KEY', 'HOLDER', 'HELD FOR', 'EXPIRES IN', 'TOKEN'],
    locks.map((l) => [l.keyText, holderText(l.holder), heldFor(l), expiresIn(l), l.fencingToken === null ? '-' : String(l.fencingToken)]),
  )
}

function showLines(lock, snapshot) {
  const iso = (d) => (d ? d.toISOString() : '?')
  const rows = [['key', lock.keyText]]
  if (typeof lock.key !== 'string') rows.push(['stored as', `action: ${JSON.stringify(lock.action)}`])
  rows.push(['holder', holderText(lock.holder)])
  if (lock.holder) {
    for (const [field, value] of Object.entries(lock.holder)) {
      if (!['host', 'pid', 'app'].includes(field)) rows.push([`  ${field}`, typeof value === 'string' ? value : JSON.stringify(value)])
    }
  } else {
    rows.push(['', 'no holder in the document: a mongo-locks client wrote it, or an older mongo-locks-native'])
  }
  rows.push(['_id', lock._id])
  rows.push(['created', `${iso(lock.createdAt)}  held for ${heldFor(lock)}`])
  rows.push(['refreshed', `${iso(lock.refreshedAt)}  ${lock.refreshedAgoMs === null ? '?' : `${duration(lock.refreshedAgoMs)} ago`}`])
  rows.push([
    'expires',
    `${iso(lock.expiresAt)}  ${lock.expired ? `${expiresIn(lock)}: its holder stopped refreshing it; the next mongo-locks-native lock() takes it over` : `in ${expiresIn(lock)}`}`,
  ])
  rows.push(['fencing token', lock.fencingToken === null ? 'none (taken without fencing)' : String(lock.fencingToken)])
  rows.push(['server time', `${new Date(snapshot.now).toISOString()}${snapshot.clock === 'server' ? '' : ' (this machine: the server did not say)'}`])
  const width = Math.max(...rows.map((r) => r[0].length))
  return rows.map(([label, value]) => `${label.padEnd(width)}  ${value}`.trimEnd())
}

// --- Reading ---

/** All the locks, sorted by key, at the server's time: { now, clock, locks }. */
async function readLocks(conn, timeoutMs) {
  const docs = await bounded(conn.collection.find({ action: { $exists: true } }).toArray(), timeoutMs, 'reading the locks')
  const { now, clock } = await serverClock(conn.db, timeoutMs)
  const locks = docs.map((d) => describeLock(d, now))
  locks.sort((a, b) => collator.compare(a.keyText, b.keyText) || (a.keyText < b.keyText ? -1 : a.keyText > b.keyText ? 1 : 0))
  return { now, clock, locks }
}

/** The lock on `action` at the server's time: { now, clock, doc, lock } (doc null when not locked). */
async function readLock(conn, action, timeoutMs) {
  const doc = await bounded(conn.collection.findOne({ action }), timeoutMs, 'reading the lock')
  const { now, clock } = await serverClock(conn.db, timeoutMs)
  return { now, clock, doc, lock: doc ? describeLock(doc, now) : null }
}

/** Whether the collection exists (to tell an empty list from a wrong --db or --collection). */
async function collectionExists(conn, timeoutMs) {
  const found = await bounded(
    conn.db.listCollections({ name: conn.collection.collectionName }, { nameOnly: true }).toArray(),
    timeoutMs,
    'listing the collections',
  )
  return found.length > 0
}

function jsonHead(where, snapshot) {
  return {
    database: where.database,
    collection: where.collection,
    serverTime: new Date(snapshot.now).toISOString(),
    clock: snapshot.clock,
  }
}

const notLocked = (request, where) =>
  new CliError(EXIT_NOT_LOCKED, `no lock on ${request.keyLabel} in ${where.database}.${where.collection}`)

// --- Commands ---

async function list(request, where, conn, out) {
  const snapshot = await readLocks(conn, request.timeoutMs)
  if (request.values.json) {
    out.write(`${JSON.stringify({ ...jsonHead(where, snapshot), locks: snapshot.locks.map(lockJson) }, null, 2)}\n`)
    return EXIT_OK
  }
  if (snapshot.locks.length === 0) {
    const exists = await collectionExists(conn, request.timeoutMs)
    out.write(`No locks in ${where.database}.${where.collection}${exists ? '.' : ' (no such collection: check --db and --collection).'}\n`)
    return EXIT_OK
  }
  out.write(`${listLines(snapshot.locks).join('\n')}\n`)
  return EXIT_OK
}

async function show(request, where, conn, out) {
  const snapshot = await readLock(conn, request.action, request.timeoutMs)
  if (!snapshot.lock) throw notLocked(request, where)
  if (request.values.json) {
    out.write(`${JSON.stringify({ ...jsonHead(where, snapshot), lock: lockJson(snapshot.lock) }, null, 2)}\n`)
  } else {
    out.write(`${showLines(snapshot.lock, snapshot).join('\n')}\n`)
  }
  return EXIT_OK
}

/** Asks `question` on the terminal; resolves to the answer line ('' at end of input). */
function ask(question) {
  return new Promise((resolve) => {
    const rl = readline.createInterface({ input: process.stdin, output: process.stderr, terminal: true })
    let answered = false
    rl.question(question, (answer) => {
      answered = true
      rl.close()
      resolve(answer)
    })
    rl.on('close', () => {
      if (!answered) {
        process.stderr.write('\n')
        resolve('')
      }
    })
    // Ctrl-C at the prompt: no.
    rl.on('SIGINT', () => rl.close())
  })
}

async function unlock(request, where, conn, out, err) {
  const snapshot = await readLock(conn, request.action, request.timeoutMs)
  const lock = snapshot.lock
  if (!lock) throw notLocked(request, where)
  const holder = holderText(lock.holder)
  if (!request.values.yes) {
    if (!process.stdin.isTTY) {
      throw usageError(`not deleting the lock on ${request.keyLabel}: no terminal to confirm on (stdin is not a TTY); add --yes to delete without asking`)
    }
    err.write(`${showLines(lock, snapshot).map((l) => `  ${l}`).join('\n')}\n`)
    err.write(
      'If its holder is alive, it may still be working under this lock: once the lock\n' +
        'is deleted, another process can take the key at once. (A mongo-locks-native\n' +
        'holder notices at its next refresh, and its lock.signal aborts.)\n',
    )
    const answer = await ask(`Delete the lock on ${request.keyLabel} held by ${holder}? [y/N] `)
    if (!/^\s*y(es)?\s*$/i.test(answer)) throw usageError(`not deleted: the lock on ${request.keyLabel} is still held`)
  }
  // By _id: the very document shown, never a newer holder's lock on the key.
  let deleted
  try {
    deleted = await bounded(conn.collection.deleteOne({ _id: snapshot.doc._id }), request.timeoutMs, 'deleting the lock')
  } catch (e) {
    throw serverError('deleting the lock', e)
  }
  if (deleted.deletedCount !== 1) {
    throw new CliError(
      EXIT_NOT_LOCKED,
      `nothing deleted: the lock on ${request.keyLabel} (_id ${lock._id}) was freed or taken over meanwhile; look again with show`,
    )
  }
  const manager = lock.holder && lock.holder.manager !== undefined ? ` manager=${lock.holder.manager}` : ''
  out.write(
    `deleted lock key=${JSON.stringify(lock.keyText)} _id=${lock._id} holder=${JSON.stringify(holder)}${manager} ` +
      `held_for=${heldFor(lock)} in=${where.database}.${where.collection}\n`,
  )
  return EXIT_OK
}

// --- watch ---

const CSI = '\x1b['
const ENTER_SCREEN = `${CSI}?1049h${CSI}?25l` // alternate screen, cursor hidden
const LEAVE_SCREEN = `${CSI}?25h${CSI}?1049l` // cursor shown, main screen back

/** Cuts `line` to `width` characters. */
const fit = (line, width) => (width > 0 && line.length > width ? `${line.slice(0, Math.max(0, width - 1))}…` : line)

function clockText(ms) {
  return new Date(ms).toISOString().slice(11, 19)
}

async function watch(request, where, conn, out) {
  const tty = Boolean(out.isTTY)
  const input = process.stdin
  let stop
  const stopped = new Promise((resolve) => { stop = resolve })
  let finished = false
  stopped.then(() => { finished = true })

  // The first read before touching the terminal: a server that is not there
  // is one line on stderr, as for list.
  let last = await readLocks(conn, request.timeoutMs)
  let lastAt = Date.now()
  let problem = null

  let restored = !tty
  const restore = () => {
    if (restored) return
    restored = true
    if (input.isTTY && input.isRaw) input.setRawMode(false)
    out.write(LEAVE_SCREEN)
  }
  const onKey = (data) => {
    const text = String(data)
    // q, Q, Ctrl-C, Ctrl-D (the terminal is raw: Ctrl-C is a byte, not SIGINT).
    if (/[qQ\x03\x04]/.test(text)) stop()
  }
  const onSignal = () => stop()
  process.on('exit', restore)
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, onSignal)
  if (input.isTTY) {
    input.setRawMode(true)
    input.on('data', onKey)
    input.resume()
  }
  const draw = () => {
    const expired = last.locks.filter((l) => l.expired).length
    const header = [
      `${where.database}.${where.collection} on ${where.hosts}`,
      `${last.locks.length} lock${last.locks.length === 1 ? '' : 's'}${expired ? ` (${expired} expired)` : ''}  ` +
        `${last.clock} time ${clockText(last.now)}Z  every ${request.intervalMs / 1000}s${tty ? '  q: quit' : ''}`,
    ]
    const status = problem
      ? `! ${problem} (last read ${duration(Date.now() - lastAt)} ago, retrying)`
      : ''
    const body = last.locks.length === 0 ? ['No locks.'] : listLines(last.locks)
    let lines = [...header, status, ...body]
    if (!tty) {
      out.write(`${lines.join('\n')}\n\n`)
      return
    }
    const rows = out.rows || 24
    const columns = out.columns || 80
    if (lines.length > rows) {
      const hidden = lines.length - (rows - 1)
      lines = [...lines.slice(0, rows - 1), `… ${hidden} more (a taller terminal, or list, shows them)`]
    }
    out.write(`${CSI}H${lines.map((l) => `${fit(l, columns)}${CSI}K`).join('\r\n')}${CSI}J`)
  }
  const onResize = () => draw()

  try {
    if (tty) {
      out.write(ENTER_SCREEN)
      out.on('resize', onResize)
    }
    draw()
    while (!finished) {
      let timer
      await Promise.race([stopped, new Promise((resolve) => { timer = setTimeout(resolve, request.intervalMs) })])
      clearTimeout(timer)
      if (finished) break
      try {
        last = await Promise.race([readLocks(conn, request.timeoutMs), stopped.then(() => last)])
        if (finished) break
        lastAt = Date.now()
        problem = null
      } catch (e) {
        problem = serverError(`the server at ${where.hosts}`, e).message
      }
      draw()
    }
  } finally {
    out.off('resize', onResize)
    for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.off(sig, onSignal)
    if (input.isTTY) {
      input.off('data', onKey)
      input.pause()
    }
    restore()
    process.off('exit', restore)
  }
  return EXIT_OK
}

// --- Main ---

async function main(argv, env, out, err) {
  const request = parseCommandLine(argv)
  if (request.command === 'help') {
    out.write(USAGE)
    return { code: EXIT_OK }
  }
  if (request.command === 'version') {
    out.write(`${require('../package.json').version}\n`)
    return { code: EXIT_OK }
  }
  const where = target(request.values, env)
  const conn = await connect(where, request.timeoutMs)
  try {
    const run = { list, show, watch, unlock }[request.command]
    const code = await run(request, where, conn, out, err).catch((e) => {
      throw serverError(`the server at ${where.hosts}`, e)
    })
    return { code, conn }
  } catch (e) {
    e.conn = conn
    throw e
  }
}

/** Closes the client (briefly: a dead server must not hold the exit), flushes, exits. */
async function exit(code, conn) {
  if (conn) await Promise.race([conn.client.close().catch(() => {}), new Promise((r) => setTimeout(r, 1000))])
  const flushed = (stream) => new Promise((resolve) => stream.write('', resolve))
  await Promise.race([Promise.all([flushed(process.stdout), flushed(process.stderr)]), new Promise((r) => setTimeout(r, 1000))])
  process.exit(code)
}

process.stdout.on('error', (e) => {
  // `list | head`: the reader went away; nothing more to say.
  if (e.code === 'EPIPE') process.exit(EXIT_OK)
})

main(process.argv.slice(2), process.env, process.stdout, process.stderr).then(
  ({ code, conn }) => exit(code, conn),
  (e) => {
    if (e instanceof CliError) {
      process.stderr.write(`${NAME}: ${e.message}\n`)
      return exit(e.exitCode, e.conn)
    }
    process.stderr.write(`${NAME}: unexpected error: ${e && e.stack ? e.stack : e}\n`)
    return exit(EXIT_SERVER, e && e.conn)
  },
)
