'use strict'
// Lock documents and once() records as shown: described at the server's
// time, as text (tables, durations, holders) and as JSON.

const { EJSON, deserialize } = require('mongodb').BSON
const keys = require('./keys')

const UNKNOWN_HOLDER = 'unknown (mongo-locks or older)'

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
    key: keys.userKey(doc.action),
    keyText: keys.keyText(doc.action),
    slot: keys.slotOf(doc.action),
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

/** The JSON form of a described lock: `keyText` is the KEY argument that names it. */
function lockJson(lock) {
  return {
    key: lock.key,
    keyText: lock.keyText,
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

/** The JSON head of list and show: where, and when on which clock. */
function jsonHead(to, snapshot) {
  return {
    database: to.database,
    collection: to.collection,
    serverTime: new Date(snapshot.now).toISOString(),
    clock: snapshot.clock,
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
const tokenText = (lock) => (lock.fencingToken === null ? '-' : String(lock.fencingToken))

/** "billing-api on web-3 (pid 4711)", or UNKNOWN_HOLDER for documents without `holder`. */
function holderText(holder) {
  if (!holder) return UNKNOWN_HOLDER
  const place = `${holder.host ?? '?'} (pid ${holder.pid ?? '?'})`
  return holder.app ? `${holder.app} on ${place}` : place
}

/** Rows as aligned columns. */
function table(header, rows) {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)))
  const line = (cells) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]))).join('  ')
  return [line(header), ...rows.map(line)]
}

/** Labelled lines: "label  value", the labels padded to one width. */
function labelled(rows) {
  const width = Math.max(...rows.map((r) => r[0].length))
  return rows.map(([label, value]) => `${label.padEnd(width)}  ${value}`.trimEnd())
}

function listLines(locks) {
  return table(
    ['KEY', 'HOLDER', 'HELD FOR', 'EXPIRES IN', 'TOKEN'],
    locks.map((l) => [l.keyText, holderText(l.holder), heldFor(l), expiresIn(l), tokenText(l)]),
  )
}

const serverTimeText = (snapshot) =>
  `${new Date(snapshot.now).toISOString()}${snapshot.clock === 'server' ? '' : ' (this machine: the server did not say)'}`

function showLines(lock, snapshot) {
  const iso = (d) => (d ? d.toISOString() : '?')
  const rows = [['key', lock.keyText]]
  if (lock.slot) rows.push(['slot', `${keys.slotText(lock.slot)} (show ${keys.flagWord(lock.slot.kind, keys.keyArg(lock.slot.name))} lists them all)`])
  if (typeof lock.key !== 'string') rows.push(['stored as', `action: ${keys.jsonText(lock.action)}`])
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
  rows.push(['server time', serverTimeText(snapshot)])
  return labelled(rows)
}

// --- once() records ---

/**
 * A record's stored outcome (`result`: { value }, `error`: { name, message,
 * code }) as a document, or null. The library stores it as the BSON bytes
 * of that document, so that any value survives any server; a subdocument is
 * read as it is. 64-bit integers stay exact (as bigints).
 */
function storedOutcome(field) {
  if (!field || typeof field !== 'object') return null
  if (field._bsontype === 'Binary') {
    try {
      return deserialize(field.buffer.subarray(0, field.position), { useBigInt64: true })
    } catch {
      return null
    }
  }
  return field._bsontype ? null : field
}

/**
 * A once() record seen at server time `now`: running (a lock document,
 * `holder` refreshed while its function runs) or finished (`state`, the
 * outcome, `ranBy`, `expiresAt` = completion + its ttlMs).
 */
function describeRecord(doc, now) {
  const createdAt = validDate(doc.createdAt)
  const completedAt = validDate(doc.completedAt)
  const expiresAt = validDate(doc.expiresAt)
  const expiresInMs = expiresAt ? expiresAt.getTime() - now : null
  const finished = doc.state === 'completed' || doc.state === 'failed'
  const who = finished ? doc.ranBy : doc.holder
  const result = storedOutcome(doc.result)
  const error = storedOutcome(doc.error)
  return {
    key: keys.onceKey(doc.action),
    keyText: keys.keyArg(keys.onceKey(doc.action)),
    action: doc.action,
    _id: idText(doc._id),
    state: finished ? doc.state : 'running',
    // Who runs it (running) or ran it (finished): the same holder fields as a lock's.
    ranBy: who && typeof who === 'object' ? who : null,
    createdAt,
    refreshedAt: validDate(doc.refreshedAt),
    completedAt,
    expiresAt,
    ageMs: createdAt ? now - createdAt.getTime() : null,
    expiresInMs,
    expired: expiresInMs !== null && expiresInMs <= 0,
    resultBytes: typeof doc.resultBytes === 'number' ? doc.resultBytes : null,
    payloadHash: typeof doc.payloadHash === 'string' ? doc.payloadHash : null,
    fencingToken: tokenValue(doc.fencingToken),
    // The stored value, as extended JSON (Dates, bigints and Buffers stay recognisable).
    result: result && 'value' in result ? EJSON.serialize(result.value, { relaxed: true }) : undefined,
    error: error ? { name: error.name ?? null, message: error.message ?? null, code: error.code ?? null } : null,
  }
}

/** The JSON form of a described record; `withResult` adds the stored value (show), which list leaves out. */
function recordJson(record, { withResult = false } = {}) {
  const iso = (d) => d && d.toISOString()
  return {
    key: record.key,
    keyText: record.keyText,
    action: record.action,
    _id: record._id,
    state: record.state,
    ranBy: record.ranBy,
    createdAt: iso(record.createdAt),
    completedAt: iso(record.completedAt),
    expiresAt: iso(record.expiresAt),
    ageMs: record.ageMs,
    expiresInMs: record.expiresInMs,
    expired: record.expired,
    resultBytes: record.resultBytes,
    payloadHash: record.payloadHash,
    fencingToken: record.fencingToken,
    ...(withResult && record.state === 'completed' && { result: record.result ?? null }),
    ...(record.error && { error: record.error }),
  }
}

/** "512 B", "1.5 KiB", "2.0 MiB". */
function bytesText(n) {
  if (n === null) return '-'
  if (n < 1024) return `${n} B`
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`
  return `${(n / (1024 * 1024)).toFixed(1)} MiB`
}

/** "in 23h59m", "expired 4s ago". */
function expiryText(record) {
  if (record.expiresInMs === null) return '?'
  return record.expiresInMs > 0 ? `in ${duration(record.expiresInMs)}` : `expired ${duration(-record.expiresInMs)} ago`
}

function recordsLines(records) {
  return table(
    ['KEY', 'STATE', 'AGE', 'EXPIRES', 'RESULT', 'RAN BY', 'TOKEN'],
    records.map((r) => [
      r.keyText,
      r.state,
      r.ageMs === null ? '?' : duration(r.ageMs),
      expiryText(r),
      r.state === 'running' ? '-' : bytesText(r.resultBytes),
      holderText(r.ranBy),
      tokenText(r),
    ]),
  )
}

/** What the record's expiry means for the next once() call of its key. */
function expiryMeaning(record) {
  if (record.state === 'running') {
    return record.expired
      ? 'its process stopped refreshing it: the next once() call takes it over and runs again'
      : 'refreshed while the function runs; taken over by the next once() call if its process stops refreshing it'
  }
  if (record.expired) return 'the next once() call removes it and runs again'
  return record.state === 'failed' ? 'until then, once() calls reject with this failure' : 'until then, once() calls get this result'
}

function recordLines(record, snapshot) {
  const iso = (d) => (d ? d.toISOString() : '?')
  const rows = [['once() key', record.keyText]]
  if (typeof record.key !== 'string') rows.push(['stored as', `action: ${keys.jsonText(record.action)}`])
  const stateText = {
    running: 'running: its function has not returned yet',
    completed: 'completed: later once() calls get its stored result',
    failed: 'failed: its function threw and rememberErrors kept the failure',
  }
  rows.push(['state', stateText[record.state]])
  rows.push([record.state === 'running' ? 'running on' : 'ran on', holderText(record.ranBy)])
  if (record.ranBy) {
    for (const [field, value] of Object.entries(record.ranBy)) {
      if (!['host', 'pid', 'app'].includes(field)) rows.push([`  ${field}`, typeof value === 'string' ? value : JSON.stringify(value)])
    }
  }
  rows.push(['_id', record._id])
  rows.push(['started', `${iso(record.createdAt)}  ${record.ageMs === null ? '?' : `${duration(record.ageMs)} ago`}`])
  if (record.state === 'running') {
    rows.push(['refreshed', `${iso(record.refreshedAt)}  ${record.refreshedAt ? `${duration(snapshot.now - record.refreshedAt.getTime())} ago` : '?'}`])
  } else {
    rows.push(['finished', `${iso(record.completedAt)}  ${record.completedAt ? `${duration(snapshot.now - record.completedAt.getTime())} ago` : '?'}`])
  }
  rows.push(['expires', `${iso(record.expiresAt)}  ${expiryText(record)}: ${expiryMeaning(record)}`])
  if (record.state === 'completed') rows.push(['result', `${bytesText(record.resultBytes)} as BSON (--json shows the value)`])
  if (record.error) {
    rows.push(['error', `${record.error.name ?? 'Error'}: ${record.error.message ?? ''}${record.error.code !== null ? ` (code ${JSON.stringify(record.error.code)})` : ''}`])
  }
  rows.push(['payload', record.payloadHash ? `SHA-256 ${record.payloadHash}` : 'none given (calls with any payload get the outcome)'])
  rows.push(['fencing token', record.fencingToken === null ? '-' : String(record.fencingToken)])
  rows.push(['server time', serverTimeText(snapshot)])
  return labelled(rows)
}

const plural = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`

/** The slots of a semaphore or read/write lock: a summary line, a table, the server time. */
function slotsLines(kind, name, slots, snapshot, place) {
  const expired = slots.filter((l) => l.expired).length
  const writer = slots.some((l) => l.slot.field === 'writer')
  const readers = slots.length - (writer ? 1 : 0)
  const queued = slots.filter((l) => l.slot.field === 'queue').length
  let summary
  if (kind === 'semaphore') {
    summary = `${plural(slots.length - queued, 'permit')} held`
    if (queued) summary += `, ${plural(queued, 'waiter')} queued`
  } else {
    summary = `${writer ? 'a writer' : 'no writer'} and ${plural(readers, 'reader')}`
    if (writer && readers > 0) summary += ' (the writer waits for the readers to leave)'
  }
  if (expired) summary += `, ${expired} expired`
  const head = `${keys.primitiveText(kind, name)} in ${place}: ${summary}`
  const slotColumn = (slot) => (slot.field === 'permit' ? String(slot.index) : keys.slotName(slot))
  const rows = slots.map((l) => [slotColumn(l.slot), holderText(l.holder), heldFor(l), expiresIn(l), tokenText(l), l._id])
  const header = [kind === 'semaphore' ? 'PERMIT' : 'SLOT', 'HOLDER', 'HELD FOR', 'EXPIRES IN', 'TOKEN', '_ID']
  return [head, ...table(header, rows), `server time ${serverTimeText(snapshot)}`]
}

module.exports = {
  UNKNOWN_HOLDER,
  describeLock,
  describeRecord,
  lockJson,
  recordJson,
  recordsLines,
  recordLines,
  plural,
  jsonHead,
  duration,
  heldFor,
  holderText,
  listLines,
  showLines,
  slotsLines,
}
