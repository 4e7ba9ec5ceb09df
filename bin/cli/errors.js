'use strict'
// The exit statuses of the command line and the error that ends a command
// with one line on stderr.

const NAME = 'mongo-locks-native'

const EXIT_OK = 0
const EXIT_SERVER = 1
const EXIT_USAGE = 2
const EXIT_NOT_LOCKED = 3
const EXIT_NO_COLLECTION = 4

/** An error that ends the command with one line on stderr and an exit status. */
class CliError extends Error {
  constructor(exitCode, message) {
    super(message)
    this.exitCode = exitCode
  }
}
const usageError = (message) => new CliError(EXIT_USAGE, message)

/** A driver error as a one-line CliError. */
function serverError(what, err) {
  if (err instanceof CliError) return err
  const message = String(err && err.message ? err.message : err).split('\n')[0]
  return new CliError(EXIT_SERVER, `${what}: ${message}`)
}

/** "a", "a and b", "a, b and c". */
function andList(items) {
  if (items.length <= 1) return items.join('')
  return `${items.slice(0, -1).join(', ')} and ${items[items.length - 1]}`
}

module.exports = {
  NAME,
  EXIT_OK,
  EXIT_SERVER,
  EXIT_USAGE,
  EXIT_NOT_LOCKED,
  EXIT_NO_COLLECTION,
  CliError,
  usageError,
  serverError,
  andList,
}
