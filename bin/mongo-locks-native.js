#!/usr/bin/env node
'use strict'
// `npx mongo-locks-native …`: see and operate the locks of a collection in
// production: list, show, watch, unlock; and the once() records kept beside
// them: records, show --once. It reads the documents directly
// with the application's `mongodb` driver (a peer dependency of the
// package), so it needs neither the Rust addon nor a LockManager, and it
// shows locks written by stock mongo-locks as well as by this package.
//
// This file parses the command line, runs the command and exits; the
// commands live in cli/ (list.js, records.js, show.js, watch.js, unlock.js) over
// cli/connection.js (where and how to connect), cli/read.js (reading, and
// what to say when nothing is found), cli/format.js (how locks and records are shown)
// and cli/keys.js (how keys are written). Exit statuses: cli/errors.js, and
// the help (cli/usage.js).

const { NAME, EXIT_OK, EXIT_SERVER, CliError, serverError } = require('./cli/errors')
const { USAGE } = require('./cli/usage')
const { parseCommandLine } = require('./cli/args')
const { where, connect } = require('./cli/connection')
const { list } = require('./cli/list')
const { records } = require('./cli/records')
const { show } = require('./cli/show')
const { watch } = require('./cli/watch')
const { unlock } = require('./cli/unlock')

const COMMANDS = { list, records, show, watch, unlock }

async function main(argv, env, out, err) {
  const request = parseCommandLine(argv, { stdinIsTTY: Boolean(process.stdin.isTTY) })
  if (request.command === 'help') {
    out.write(USAGE)
    return { code: EXIT_OK }
  }
  if (request.command === 'version') {
    out.write(`${require('../package.json').version}\n`)
    return { code: EXIT_OK }
  }
  const to = where(request.values, env)
  const conn = await connect(to, request.timeoutMs)
  try {
    const run = COMMANDS[request.command]
    const code = await run(request, to, conn, out, err).catch((e) => {
      throw serverError(`the server at ${to.hosts}`, e)
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
