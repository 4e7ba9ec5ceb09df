'use strict'
// `records`: the once() records of the collection, by key: what ran (or
// runs), when, until when its outcome is kept, how large, where, its token.

const { EXIT_OK } = require('./errors')
const { readLocks, requireCollection } = require('./read')
const { recordsLines, recordJson, jsonHead } = require('./format')

async function records(request, to, conn, out) {
  const snapshot = await readLocks(conn, request.timeoutMs)
  // Nothing at all: an empty collection, or a wrong --db or --collection (exit 4).
  if (snapshot.records.length === 0 && snapshot.locks.length === 0) await requireCollection(conn, to, request.timeoutMs)
  if (request.values.json) {
    out.write(`${JSON.stringify({ ...jsonHead(to, snapshot), records: snapshot.records.map((r) => recordJson(r)) }, null, 2)}\n`)
  } else if (snapshot.records.length === 0) {
    out.write(`No once() records in ${to.database}.${to.collection}.\n`)
  } else {
    out.write(`${recordsLines(snapshot.records).join('\n')}\n`)
  }
  return EXIT_OK
}

module.exports = { records }
