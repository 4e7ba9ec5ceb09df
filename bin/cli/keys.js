'use strict'
// How keys are written on the command line and printed: one form for both,
// so that what `list` prints can be pasted back into `show` and `unlock`.
//
//   payment-991              a string key, as it is
//   json:["org",7]           any other key (array, number, object): json: and its JSON
//   str:json:x               a string key that itself starts with json: or str:
//
// And the slots of the primitives built on lock documents (see
// src/semaphore.rs and src/rwlock.rs): permit i of semaphore K is the lock on
// { _semaphore: K, permit: i }, the writer of read/write lock K the lock on
// { _rwlock: K, writer: true }, reader i the lock on { _rwlock: K, reader: i },
// K stored as lock() stores a key (arrays wrapped).
//
// And the records of once(): the record of key K is the document on
// { _once: K } (src/engine/once.rs), K stored as lock() stores a key.

const { usageError } = require('./errors')
// The slot documents' shapes and the largest count of permits or readers
// (src/semaphore.rs MAX_LIMIT): the library's own rules.
const { MAX_SLOTS, SLOTS, wrapArray } = require('../../lib/rules.js')

const JSON_PREFIX = 'json:'
const STR_PREFIX = 'str:'
const PREFIXED = /^(json|str):/

function jsonText(value) {
  try {
    return JSON.stringify(value) ?? String(value)
  } catch {
    return String(value)
  }
}

/** The key as the application gave it to lock(): arrays unwrapped from { _key_array }. */
function userKey(action) {
  if (action && typeof action === 'object' && !Array.isArray(action)) {
    const fields = Object.keys(action)
    if (fields.length === 1 && fields[0] === '_key_array' && Array.isArray(action._key_array)) return action._key_array
  }
  return action
}

/** A key as written on the command line: the string itself, or json: and its JSON. */
function keyArg(key) {
  if (typeof key === 'string') return PREFIXED.test(key) ? `${STR_PREFIX}${key}` : key
  return `${JSON_PREFIX}${jsonText(key)}`
}

/** The stored action's key as written on the command line. */
const keyText = (action) => keyArg(userKey(action))

/** A key from its JSON (--json-key, or what follows json:); `what` names it in errors. */
function parseJsonKey(json, what) {
  let key
  try {
    key = JSON.parse(json)
  } catch (err) {
    throw usageError(`${what} is not valid JSON (${err.message}): ${json}`)
  }
  if (key === null || typeof key === 'boolean') throw usageError(`${what} ${json} is not a key lock() accepts`)
  return key
}

/** A key from the command line, in the form keyArg prints. */
function parseKey(text, what) {
  if (text.startsWith(JSON_PREFIX)) {
    return parseJsonKey(text.slice(JSON_PREFIX.length), `${what} ${text}: the text after json:`)
  }
  if (text.startsWith(STR_PREFIX)) return text.slice(STR_PREFIX.length)
  return text
}

const isPlainObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v)
const isIndex = (n) => Number.isInteger(n) && n >= 0 && n < MAX_SLOTS

/** The fields of each slot document's action, in the order the library writes them. */
const SLOT_SHAPES = [
  { ...SLOTS.permit, valid: isIndex },
  // A waiter's place in the semaphore's queue (it has waited a while; the
  // others leave it a free permit).
  { ...SLOTS.queue, valid: isIndex },
  { ...SLOTS.writer, valid: (v) => v === true },
  { ...SLOTS.reader, valid: isIndex },
]

function slotShape(action) {
  if (!isPlainObject(action)) return null
  const fields = Object.keys(action)
  if (fields.length !== 2) return null
  return SLOT_SHAPES.find((s) => fields.includes(s.tag) && fields.includes(s.field) && s.valid(action[s.field])) ?? null
}

/** The action of a primitive's slot, as the library writes it. */
function slotAction(kind, nameAction, field, value) {
  const shape = SLOT_SHAPES.find((s) => s.kind === kind && s.field === field)
  return { [shape.tag]: nameAction, [shape.field]: value }
}

/**
 * The stored action of a key, as lock() stores it: arrays wrapped, as
 * mongo-locks does; a slot of a semaphore or read/write lock with its fields
 * in the library's order, whichever order they were typed in.
 */
function actionOf(key) {
  const shape = slotShape(key)
  if (shape) return slotAction(shape.kind, wrapArray(key[shape.tag]), shape.field, key[shape.field])
  return wrapArray(key)
}

/** The action of the once() record of `key`. */
const onceAction = (key) => ({ _once: wrapArray(key) })

/** The key of a once() record's action, as the application gave it to once(); undefined for any other action. */
function onceKey(action) {
  if (!isPlainObject(action)) return undefined
  const fields = Object.keys(action)
  return fields.length === 1 && fields[0] === '_once' ? userKey(action._once) : undefined
}

/** Whether `action` is that of a once() record, not a lock's. */
const isOnceAction = (action) => onceKey(action) !== undefined

/** What a slot document is: { kind, name (the primitive's key), field, index }, or null for a plain lock. */
function slotOf(action) {
  const shape = slotShape(action)
  if (!shape) return null
  return { kind: shape.kind, name: userKey(action[shape.tag]), field: shape.field, index: action[shape.field] }
}

const KIND_TEXT = { semaphore: 'semaphore', rwlock: 'read/write lock' }

/** "semaphore exports", "read/write lock json:["org",7]". */
const primitiveText = (kind, name) => `${KIND_TEXT[kind]} ${keyArg(name)}`

/** The slot's own part: "permit 2", "writer", "reader 3". */
const slotName = (slot) => (slot.field === 'writer' ? 'writer' : `${slot.field} ${slot.index}`)

/** "permit 2 of semaphore exports", "the writer of read/write lock report". */
function slotText(slot) {
  const own = slot.field === 'writer' ? 'the writer' : slotName(slot)
  return `${own} of ${primitiveText(slot.kind, slot.name)}`
}

/** The flags that name a slot on the command line: "--semaphore exports --permit 2". */
function slotFlags(slot) {
  const own = slot.field === 'writer' ? '--writer' : `--${slot.field} ${slot.index}`
  return `${flagWord(slot.kind, keyArg(slot.name))} ${own}`
}

/** `--name value` as shell words (`--name=value` for a value that starts with "-"). */
function flagWord(name, value) {
  return value.startsWith('-') ? `--${name}=${shellWord(value)}` : `--${name} ${shellWord(value)}`
}

/** A KEY argument as shell words (after -- when it starts with "-"). */
function keyWords(arg) {
  return arg.startsWith('-') ? `-- ${shellWord(arg)}` : shellWord(arg)
}

/** `text` as one shell word: as it is when safe, else in single quotes. */
function shellWord(text) {
  if (/^[\w@%+=:,./-]+$/.test(text)) return text
  return `'${text.replace(/'/g, `'\\''`)}'`
}

module.exports = {
  MAX_SLOTS,
  jsonText,
  userKey,
  keyArg,
  keyText,
  parseKey,
  parseJsonKey,
  wrapArray,
  actionOf,
  slotAction,
  slotOf,
  onceAction,
  onceKey,
  isOnceAction,
  slotName,
  slotText,
  slotFlags,
  primitiveText,
  shellWord,
  flagWord,
  keyWords,
}
