'use strict'
// Reading the locks at the server's time, and what to say when what was
// asked for is not there: a database or collection that does not exist, or
// a lock under a key that looks like the one typed.

const { CliError, EXIT_NOT_LOCKED, EXIT_NO_COLLECTION } = require('./errors')
const { bounded, serverClock } = require('./connection')
const { describeLock, describeRecord } = require('./format')
const keys = require('./keys')

const collator = new Intl.Collator('en', { numeric: true })
const byText = (a, b) => collator.compare(a, b) || (a < b ? -1 : a > b ? 1 : 0)

/** Documents matching `filter`, described at the server's time: { now, clock, locks }, sorted by key. */
async function readMatching(conn, filter, timeoutMs, what) {
  const docs = await bounded(conn.collection.find(filter).toArray(), timeoutMs, what)
  const { now, clock } = await serverClock(conn.db, timeoutMs)
  const locks = docs.map((d) => describeLock(d, now))
  locks.sort((a, b) => byText(a.keyText, b.keyText))
  return { now, clock, locks }
}

/**
 * All the locks, sorted by key, at the server's time: { now, clock, locks,
 * records }. The once() records in the same collection are set apart
 * (`records`, sorted by key): they are not locks anyone holds.
 */
async function readLocks(conn, timeoutMs) {
  const docs = await bounded(conn.collection.find({ action: { $exists: true } }).toArray(), timeoutMs, 'reading the locks')
  const { now, clock } = await serverClock(conn.db, timeoutMs)
  const locks = docs.filter((d) => !keys.isOnceAction(d.action)).map((d) => describeLock(d, now))
  const records = docs.filter((d) => keys.isOnceAction(d.action)).map((d) => describeRecord(d, now))
  locks.sort((a, b) => byText(a.keyText, b.keyText))
  records.sort((a, b) => byText(a.keyText, b.keyText))
  return { now, clock, locks, records }
}

/** The once() record of `action` at the server's time: { now, clock, doc, record } (doc null when there is none). */
async function readRecord(conn, action, timeoutMs) {
  const doc = await bounded(conn.collection.findOne({ action }), timeoutMs, 'reading the record')
  const { now, clock } = await serverClock(conn.db, timeoutMs)
  return { now, clock, doc, record: doc ? describeRecord(doc, now) : null }
}

/** The lock on `action` at the server's time: { now, clock, doc, lock } (doc null when not locked). */
async function readLock(conn, action, timeoutMs) {
  const doc = await bounded(conn.collection.findOne({ action }), timeoutMs, 'reading the lock')
  const { now, clock } = await serverClock(conn.db, timeoutMs)
  return { now, clock, doc, lock: doc ? describeLock(doc, now) : null }
}

const TAGS = { semaphore: '_semaphore', rwlock: '_rwlock' }
const primitiveFilter = (kind, nameAction) => ({ [`action.${TAGS[kind]}`]: nameAction })

/** Every slot document of the semaphore or read/write lock: the writer first, then by number. */
async function readSlots(conn, kind, nameAction, timeoutMs) {
  const snapshot = await readMatching(conn, primitiveFilter(kind, nameAction), timeoutMs, 'reading the slots')
  // The writer first, then permits or readers by number, then queued waiters.
  const rank = (l) => (l.slot.field === 'writer' ? -1 : l.slot.field === 'queue' ? keys.MAX_SLOTS + l.slot.index : l.slot.index)
  snapshot.locks = snapshot.locks.filter((l) => l.slot && l.slot.kind === kind).sort((a, b) => rank(a) - rank(b))
  return snapshot
}

// --- A database or collection that does not exist ---

const LOCK_LIKE = /lock/i
const MOST_NAMED = 8

const quoted = (name) => JSON.stringify(name)

function someOf(names) {
  if (names.length <= MOST_NAMED) return names.join(', ')
  return `${names.slice(0, MOST_NAMED).join(', ')} and ${names.length - MOST_NAMED} more`
}

async function collectionNames(db, timeoutMs) {
  const found = await bounded(db.listCollections({}, { nameOnly: true }).toArray(), timeoutMs, 'listing the collections')
  return found.map((c) => c.name).filter((n) => !n.startsWith('system.')).sort(byText)
}

/** The databases' names, or null when the server does not say (not authorized). */
async function databaseNames(conn, timeoutMs) {
  try {
    const reply = await bounded(conn.client.db('admin').admin().listDatabases({ nameOnly: true }), timeoutMs, 'listing the databases')
    return reply.databases.map((d) => d.name).sort(byText)
  } catch {
    return null
  }
}

/**
 * null when the collection exists; else the error that says which of the
 * database and the collection does not exist and which do (collections
 * named like locks, or as the one asked for, in any database).
 */
async function missingCollection(conn, to, timeoutMs) {
  const here = await collectionNames(conn.db, timeoutMs)
  if (here.includes(to.collection)) return null
  const databases = await databaseNames(conn, timeoutMs)
  const dbExists = databases ? databases.includes(to.database) : here.length > 0
  const candidates = []
  for (const name of (databases ?? [to.database]).slice(0, 50)) {
    const names = name === to.database ? here : await collectionNames(conn.client.db(name), timeoutMs).catch(() => [])
    for (const c of names) {
      if (c === to.collection || LOCK_LIKE.test(c)) candidates.push({ ns: `${name}.${c}`, rank: (c === to.collection ? 0 : 2) + (name === to.database ? 0 : 1) })
    }
  }
  candidates.sort((a, b) => a.rank - b.rank || byText(a.ns, b.ns))
  const lockLike = candidates.length ? `collections that look like locks: ${someOf(candidates.map((c) => c.ns))}` : null
  let message
  if (!dbExists) {
    message = `no database ${quoted(to.database)}${databases ? '' : ' (it has no collections)'} (check --db); `
    message += lockLike ?? (databases ? `the databases: ${someOf(databases)}` : 'the server does not say which databases exist (not authorized)')
  } else {
    message = `no collection ${quoted(to.collection)} in database ${quoted(to.database)} (check --collection); `
    message += lockLike ?? `its collections: ${someOf(here)}`
  }
  return new CliError(EXIT_NO_COLLECTION, message)
}

/** Throws the error of missingCollection, if any. */
async function requireCollection(conn, to, timeoutMs) {
  const missing = await missingCollection(conn, to, timeoutMs)
  if (missing) throw missing
}

// --- A lock that is not there, and the one that was probably meant ---

function typeName(key) {
  if (Array.isArray(key)) return 'array'
  return typeof key === 'object' ? 'object' : typeof key
}

/** The keys someone who typed `key` may have meant: a string read as JSON, or anything else as the text of its JSON. */
function lookalikes(key) {
  if (typeof key !== 'string') return [keys.jsonText(key)]
  try {
    const value = JSON.parse(key)
    return value === null || typeof value === 'boolean' ? [] : [value]
  } catch {
    return []
  }
}

/** Where to look, best first: { filter, says } (`says()`: what is there and the command that shows it). */
function lookalikeSearches(target, command) {
  const searches = []
  const again = (arg) => `${command} ${keys.keyWords(arg)}${command === 'unlock' ? ' --force' : ''}`
  const plain = (key) => {
    const action = keys.actionOf(key)
    const arg = keys.keyText(action)
    const jsonKey = typeof key === 'string' ? '' : ` (or --json-key ${keys.shellWord(keys.jsonText(key))})`
    searches.push({ filter: { action }, says: () => `there is a lock on the ${typeName(key)} key ${arg}: ${again(arg)}${jsonKey}` })
  }
  const once = (key) => {
    searches.push({ filter: { action: keys.onceAction(key) }, says: () => `there is a once() record of ${keys.keyArg(key)}: show ${keys.flagWord('once', keys.keyArg(key))}` })
  }
  const primitive = (kind, name, others = false) => {
    const text = keys.primitiveText(kind, name)
    const what = others ? `other slots of the ${text} are held` : `there is a ${text}`
    const flags = keys.flagWord(kind, keys.keyArg(name))
    searches.push({ filter: primitiveFilter(kind, keys.wrapArray(name)), says: () => `${what}: show ${flags}` })
  }
  if (target.type === 'lock' && target.slot) {
    primitive(target.slot.kind, target.slot.name, true)
    return searches
  }
  if (target.type === 'lock') {
    const key = keys.userKey(target.action)
    for (const other of lookalikes(key)) plain(other)
    for (const name of [key, ...lookalikes(key)]) for (const kind of ['semaphore', 'rwlock']) primitive(kind, name)
    if (command === 'show') for (const name of [key, ...lookalikes(key)]) once(name)
    return searches
  }
  if (target.type === 'once') {
    for (const name of lookalikes(target.key)) once(name)
    for (const name of [target.key, ...lookalikes(target.key)]) plain(name)
    return searches
  }
  const other = target.kind === 'semaphore' ? 'rwlock' : 'semaphore'
  for (const name of lookalikes(target.name)) primitive(target.kind, name)
  for (const name of [target.name, ...lookalikes(target.name)]) plain(name)
  for (const name of [target.name, ...lookalikes(target.name)]) primitive(other, name)
  return searches
}

/** What is not there, in words: "no lock on KEY", "no permit of semaphore NAME is held". */
function absence(target, qualified) {
  if (target.type === 'once') {
    return qualified ? `no once() record of the ${typeName(target.key)} key ${target.arg}` : `no once() record of ${target.arg}`
  }
  if (target.type === 'primitive') {
    return target.kind === 'semaphore' ? `no permit of ${keys.primitiveText(target.kind, target.name)} is held` : `${keys.primitiveText(target.kind, target.name)} is not held`
  }
  if (target.slot) return `${keys.slotText(target.slot)} is not held`
  const key = keys.userKey(target.action)
  return qualified ? `no lock on the ${typeName(key)} key ${target.arg}` : `no lock on ${target.arg}`
}

/**
 * The error for a lock (or slots) not found: exit 4 when the collection does
 * not exist, else exit 3, naming a lock under a key that looks like the one
 * typed (the JSON of a string, or the text of a JSON key) and how to ask for it.
 */
async function notFound(conn, to, target, command, timeoutMs) {
  await requireCollection(conn, to, timeoutMs)
  const place = `${to.database}.${to.collection}`
  for (const search of lookalikeSearches(target, command)) {
    const doc = await bounded(conn.collection.findOne(search.filter), timeoutMs, 'looking for a similar key')
    if (doc) return new CliError(EXIT_NOT_LOCKED, `${absence(target, true)} in ${place}; ${search.says()}`)
  }
  return new CliError(EXIT_NOT_LOCKED, `${absence(target, false)} in ${place}`)
}

module.exports = { readLocks, readLock, readRecord, readSlots, requireCollection, notFound }
