'use strict'
// The command line: what it asks for, or one usage error naming everything
// that is wrong or missing.

const { parseArgs } = require('node:util')
const { usageError, andList } = require('./errors')
const { DEFAULT_TIMEOUT_S, DEFAULT_INTERVAL_S } = require('./usage')
const keys = require('./keys')

const OPTIONS = {
  uri: { type: 'string' },
  db: { type: 'string' },
  collection: { type: 'string' },
  timeout: { type: 'string' },
  json: { type: 'boolean' },
  'json-key': { type: 'string' },
  semaphore: { type: 'string' },
  rwlock: { type: 'string' },
  once: { type: 'string' },
  permit: { type: 'string' },
  reader: { type: 'string' },
  writer: { type: 'boolean' },
  interval: { type: 'string' },
  force: { type: 'boolean' },
  yes: { type: 'boolean', short: 'y' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'V' },
}
const COMMANDS = ['list', 'records', 'show', 'watch', 'unlock', 'help']
const COMMON = ['uri', 'db', 'collection', 'timeout', 'help', 'version']
const WHICH = ['json-key', 'semaphore', 'rwlock', 'permit', 'reader', 'writer']
/** The options each command takes, beside the common ones. */
const COMMAND_OPTIONS = {
  list: ['json'],
  records: ['json'],
  show: ['json', ...WHICH, 'once'],
  watch: ['interval'],
  unlock: [...WHICH, 'force', 'yes'],
  help: [],
}

/** parseArgs' errors, as one line naming the option. */
function argumentError(err) {
  const option = /'(-[^' ]+)/.exec(err.message)?.[1]
  switch (err.code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      if (option && !option.startsWith('--')) return usageError(`unknown option ${option} (see --help; put -- before a KEY that starts with "-")`)
      return usageError(`unknown option ${option ?? err.message} (see --help)`)
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE':
      if (/argument missing/.test(err.message)) return usageError(`${option} needs a value (see --help)`)
      if (/ambiguous/.test(err.message)) return usageError(`${option} needs a value; to give one that starts with "-", write ${option}=VALUE`)
      return usageError(`${option ?? 'an option'} does not take a value (see --help)`)
    default:
      return usageError(`${err.message} (see --help)`)
  }
}

/** A positive number of seconds from `--name`, in ms. */
function seconds(values, name, fallback, min) {
  const text = values[name]
  if (text === undefined) return fallback * 1000
  const n = Number(text)
  if (text.trim() === '' || !Number.isFinite(n) || n < min || n > 86_400) {
    throw usageError(`--${name} takes a number of seconds (at least ${min}), got ${JSON.stringify(text)}`)
  }
  return Math.round(n * 1000)
}

/** A slot number from `--name`, or undefined. */
function slotIndex(values, name) {
  const text = values[name]
  if (text === undefined) return undefined
  const n = Number(text)
  if (!/^\d+$/.test(text.trim()) || !Number.isInteger(n) || n >= keys.MAX_SLOTS) {
    throw usageError(`--${name} takes a whole number from 0 to ${keys.MAX_SLOTS - 1}, got ${JSON.stringify(text)}`)
  }
  return n
}

const quoteAll = (words) => words.map((k) => JSON.stringify(k)).join(' ')

/**
 * What show and unlock are about: { type: 'lock', action, arg, label, slot }
 * for one document (a key, or one slot of a primitive), or { type:
 * 'primitive', kind, name, nameAction } for every slot of a semaphore or
 * read/write lock, or { type: 'once', key, action, arg } for a once()
 * record (show only); `missing` collects what unlock still needs.
 */
function whichLock(command, values, rest, missing) {
  if (rest.length > 1) throw usageError(`${command} takes one KEY, got ${rest.length}: ${quoteAll(rest)} (quote a key with spaces)`)
  if (rest.length === 1 && values['json-key'] !== undefined) throw usageError(`${command} takes KEY or --json-key, not both`)
  const sources = [
    rest.length === 1 && 'KEY',
    values['json-key'] !== undefined && '--json-key',
    values.semaphore !== undefined && '--semaphore',
    values.rwlock !== undefined && '--rwlock',
    values.once !== undefined && '--once',
  ].filter(Boolean)
  const choices = command === 'show' ? 'KEY, --json-key, --semaphore, --rwlock or --once' : 'KEY, --json-key, --semaphore or --rwlock'
  if (sources.length > 1) throw usageError(`${command} takes one of ${choices}, got ${andList(sources)}`)
  if (values.once !== undefined) {
    if (values.permit !== undefined || values.reader !== undefined || values.writer) {
      throw usageError(`--once takes no ${values.permit !== undefined ? '--permit' : values.writer ? '--writer' : '--reader'}: a once() record has one document`)
    }
    const key = keys.parseKey(values.once, '--once')
    return { type: 'once', key, action: keys.onceAction(key), arg: keys.keyArg(key) }
  }
  const kind = values.semaphore !== undefined ? 'semaphore' : values.rwlock !== undefined ? 'rwlock' : null
  if (values.permit !== undefined && kind !== 'semaphore') throw usageError('--permit goes with --semaphore NAME')
  if ((values.reader !== undefined || values.writer) && kind !== 'rwlock') {
    throw usageError(`${values.writer ? '--writer' : '--reader'} goes with --rwlock NAME`)
  }
  if (values.reader !== undefined && values.writer) throw usageError('--writer or --reader N, not both')

  if (kind) {
    const name = keys.parseKey(values[kind], `--${kind}`)
    const nameAction = keys.wrapArray(name)
    const permit = slotIndex(values, 'permit')
    const reader = slotIndex(values, 'reader')
    let action = null
    if (permit !== undefined) action = keys.slotAction('semaphore', nameAction, 'permit', permit)
    else if (reader !== undefined) action = keys.slotAction('rwlock', nameAction, 'reader', reader)
    else if (values.writer) action = keys.slotAction('rwlock', nameAction, 'writer', true)
    if (action) return lockTarget(action)
    if (command === 'unlock') {
      const list = `show ${keys.flagWord(kind, values[kind])} lists them`
      missing.push(kind === 'semaphore' ? `--permit N (which permit: ${list})` : `--writer or --reader N (which one: ${list})`)
    }
    return { type: 'primitive', kind, name, nameAction }
  }

  if (rest.length === 1) return lockTarget(keys.actionOf(keys.parseKey(rest[0], 'KEY')))
  if (values['json-key'] !== undefined) return lockTarget(keys.actionOf(keys.parseJsonKey(values['json-key'], '--json-key')))
  if (command === 'show') {
    throw usageError('show needs a KEY (or --json-key JSON for a key that is not a string, --semaphore NAME, --rwlock NAME or --once KEY)')
  }
  missing.push('a KEY (or --json-key JSON, or --semaphore NAME --permit N, or --rwlock NAME with --writer or --reader N)')
  return null
}

function lockTarget(action) {
  const arg = keys.keyText(action)
  const slot = keys.slotOf(action)
  return { type: 'lock', action, arg, slot, label: slot ? keys.slotText(slot) : `the lock on ${arg}` }
}

/** What the command line asks for: { command, values, target?, timeoutMs, intervalMs } or a usage error. */
function parseCommandLine(argv, { stdinIsTTY = false } = {}) {
  let parsed
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true })
  } catch (err) {
    throw argumentError(err)
  }
  const { values, positionals } = parsed
  if (values.version) return { command: 'version' }
  const command = positionals[0]
  if (values.help || command === undefined || command === 'help') return { command: 'help' }
  if (!COMMANDS.includes(command)) {
    throw usageError(`unknown command ${JSON.stringify(command)}: expected one of ${COMMANDS.join(', ')} (see --help)`)
  }
  const allowed = new Set([...COMMON, ...COMMAND_OPTIONS[command]])
  for (const name of Object.keys(values)) {
    if (!allowed.has(name)) throw usageError(`${command} does not take --${name} (see --help)`)
  }
  const request = { command, values }
  const rest = positionals.slice(1)
  const missing = []
  if (command === 'show' || command === 'unlock') {
    request.target = whichLock(command, values, rest, missing)
  } else if (rest.length > 0) {
    throw usageError(`${command} takes no KEY, got ${quoteAll(rest)}`)
  }
  request.timeoutMs = seconds(values, 'timeout', DEFAULT_TIMEOUT_S, 0.1)
  request.intervalMs = seconds(values, 'interval', DEFAULT_INTERVAL_S, 0.1)
  if (command === 'unlock') {
    if (!values.force) missing.push('--force (the holder may still be working under the lock)')
    const noTerminal = !values.yes && !stdinIsTTY
    if (noTerminal && missing.length === 0) {
      const what = request.target.type === 'lock' ? request.target.label : 'it'
      throw usageError(`not deleting ${what}: no terminal to confirm on (stdin is not a TTY); add --yes to delete without asking`)
    }
    if (noTerminal) missing.push('--yes (no terminal to confirm on: stdin is not a TTY)')
    if (missing.length > 0) throw usageError(`unlock needs ${andList(missing)} (see --help)`)
  }
  return request
}

module.exports = { parseCommandLine }
