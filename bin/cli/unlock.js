'use strict'
// `unlock`: deletes one lock document (a key's, or one slot of a semaphore
// or read/write lock), after asking on the terminal unless --yes. A once()
// record named by its own action (json:{"_once":KEY}) is deleted the same
// way, shown as a record: its key then runs again at the next once() call.

const readline = require('node:readline')
const { EXIT_OK, EXIT_NOT_LOCKED, CliError, usageError, serverError } = require('./errors')
const { bounded } = require('./connection')
const { readLock, notFound } = require('./read')
const { showLines, recordLines, describeRecord, holderText, heldFor } = require('./format')
const keys = require('./keys')

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

async function unlock(request, to, conn, out, err) {
  const { target } = request
  const snapshot = await readLock(conn, target.action, request.timeoutMs)
  const lock = snapshot.lock
  if (!lock) throw await notFound(conn, to, target, 'unlock', request.timeoutMs)
  const holder = holderText(lock.holder)
  // Without --yes there is a terminal: parseCommandLine made sure of it.
  const record = keys.isOnceAction(target.action) ? describeRecord(snapshot.doc, snapshot.now) : null
  if (!request.values.yes && record) {
    err.write(`${recordLines(record, snapshot).map((l) => `  ${l}`).join('\n')}\n`)
    err.write(
      'Once the record is deleted, the next once() call of its key runs its function\n' +
        'again. (A run still going notices at its next refresh, and its signal aborts.)\n',
    )
    const answer = await ask(`Delete the once() record of ${record.keyText} (${record.state})? [y/N] `)
    if (!/^\s*y(es)?\s*$/i.test(answer)) throw usageError(`not deleted: the once() record of ${record.keyText} is still there`)
  } else if (!request.values.yes) {
    err.write(`${showLines(lock, snapshot).map((l) => `  ${l}`).join('\n')}\n`)
    err.write(
      'If its holder is alive, it may still be working under this lock: once the lock\n' +
        'is deleted, another process can take the key at once. (A mongo-locks-native\n' +
        'holder notices at its next refresh, and its lock.signal aborts.)\n',
    )
    const answer = await ask(`Delete ${target.label} held by ${holder}? [y/N] `)
    if (!/^\s*y(es)?\s*$/i.test(answer)) throw usageError(`not deleted: ${target.label} is still held`)
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
      `nothing deleted: ${target.label} (_id ${lock._id}) was freed or taken over meanwhile; look again with show`,
    )
  }
  if (record) {
    out.write(
      `deleted once() record key=${JSON.stringify(record.keyText)} _id=${record._id} state=${record.state} ` +
        `ran_by=${JSON.stringify(holderText(record.ranBy))} in=${to.database}.${to.collection}\n`,
    )
    return EXIT_OK
  }
  const manager = lock.holder && lock.holder.manager !== undefined ? ` manager=${lock.holder.manager}` : ''
  out.write(
    `deleted lock key=${JSON.stringify(lock.keyText)} _id=${lock._id} holder=${JSON.stringify(holder)}${manager} ` +
      `held_for=${heldFor(lock)} in=${to.database}.${to.collection}\n`,
  )
  return EXIT_OK
}

module.exports = { unlock }
