'use strict'
// `list`: the locks, by key. The once() records kept in the same collection
// are not locks: list counts them and leaves them to `records`.

const { EXIT_OK } = require('./errors')
const { readLocks, requireCollection } = require('./read')
const { listLines, lockJson, jsonHead, plural } = require('./format')

async function list(request, to, conn, out) {
  const snapshot = await readLocks(conn, request.timeoutMs)
  const recordCount = snapshot.records.length
  // Nothing at all: an empty collection, or a wrong --db or --collection (exit 4).
  if (snapshot.locks.length === 0 && recordCount === 0) await requireCollection(conn, to, request.timeoutMs)
  const records = `${plural(recordCount, 'once() record')} in the collection too: the records command lists them`
  if (request.values.json) {
    out.write(`${JSON.stringify({ ...jsonHead(to, snapshot), locks: snapshot.locks.map(lockJson), onceRecords: recordCount }, null, 2)}\n`)
  } else if (snapshot.locks.length === 0) {
    out.write(`No locks in ${to.database}.${to.collection}${recordCount ? ` (${records})` : ''}.\n`)
  } else {
    out.write(`${listLines(snapshot.locks).join('\n')}\n`)
    if (recordCount) out.write(`(${records})\n`)
  }
  return EXIT_OK
}

module.exports = { list }
