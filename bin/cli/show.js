'use strict'
// `show`: one lock in full, or every slot of a semaphore or read/write lock.

const { EXIT_OK } = require('./errors')
const { readLock, readSlots, notFound } = require('./read')
const { showLines, slotsLines, lockJson, jsonHead } = require('./format')

async function show(request, to, conn, out) {
  const { target } = request
  const json = request.values.json
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
