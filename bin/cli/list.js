'use strict'
// `list`: the locks, by key.

const { EXIT_OK } = require('./errors')
const { readLocks, requireCollection } = require('./read')
const { listLines, lockJson, jsonHead } = require('./format')

async function list(request, to, conn, out) {
  const snapshot = await readLocks(conn, request.timeoutMs)
  // No locks: an empty collection, or a wrong --db or --collection (exit 4).
  if (snapshot.locks.length === 0) await requireCollection(conn, to, request.timeoutMs)
  if (request.values.json) {
    out.write(`${JSON.stringify({ ...jsonHead(to, snapshot), locks: snapshot.locks.map(lockJson) }, null, 2)}\n`)
  } else if (snapshot.locks.length === 0) {
    out.write(`No locks in ${to.database}.${to.collection}.\n`)
  } else {
    out.write(`${listLines(snapshot.locks).join('\n')}\n`)
  }
  return EXIT_OK
}

module.exports = { list }
