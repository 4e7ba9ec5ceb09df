'use strict'
// `show`: one lock in full, every slot of a semaphore or read/write lock,
// or a once() record in full.

const { EXIT_OK } = require('./errors')
const { readLock, readRecord, readSlots, notFound } = require('./read')
const { showLines, slotsLines, lockJson, recordLines, recordJson, jsonHead } = require('./format')
const keys = require('./keys')

async function showRecord(request, target, to, conn, out) {
  const snapshot = await readRecord(conn, target.action, request.timeoutMs)
  if (!snapshot.record) throw await notFound(conn, to, target, 'show', request.timeoutMs)
  if (request.values.json) {
    out.write(`${JSON.stringify({ ...jsonHead(to, snapshot), record: recordJson(snapshot.record, { withResult: true }) }, null, 2)}
`)
  } else {
    out.write(`${recordLines(snapshot.record, snapshot).join('\n')}\n`)
  }
  return EXIT_OK
}

async function show(request, to, conn, out) {
  let { target } = request
  const json = request.values.json
  // A record's own action typed as a key (json:{"_once":…}, as a raw
  // document listing shows it): the record, shown as one.
  if (target.type === 'lock' && keys.isOnceAction(target.action)) {
    const key = keys.onceKey(target.action)
    target = { type: 'once', key, action: target.action, arg: keys.keyArg(key) }
  }
  if (target.type === 'once') return showRecord(request, target, to, conn, out)
  if (target.type === 'primitive') {
    const snapshot = await readSlots(conn, target.kind, target.nameAction, request.timeoutMs)
    if (snapshot.locks.length === 0) throw await notFound(conn, to, target, 'show', request.timeoutMs)
    if (json) {
      const slots = snapshot.locks.map((l) => ({ slot: l.slot.field, ...(l.slot.field !== 'writer' && { index: l.slot.index }), ...lockJson(l) }))
      out.write(`${JSON.stringify({ ...jsonHead(to, snapshot), [target.kind]: target.name, slots }, null, 2)}\n`)
    } else {
      out.write(`${slotsLines(target.kind, target.name, snapshot.locks, snapshot, `${to.database}.${to.collection}`).join('\n')}\n`)
    }
    return EXIT_OK
  }
  const snapshot = await readLock(conn, target.action, request.timeoutMs)
  if (!snapshot.lock) throw await notFound(conn, to, target, 'show', request.timeoutMs)
  if (json) {
    out.write(`${JSON.stringify({ ...jsonHead(to, snapshot), lock: lockJson(snapshot.lock) }, null, 2)}\n`)
  } else {
    out.write(`${showLines(snapshot.lock, snapshot).join('\n')}\n`)
  }
  return EXIT_OK
}

module.exports = { show }
