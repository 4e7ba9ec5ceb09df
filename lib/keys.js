'use strict'
// Lock keys for the test locker, read as the Rust core reads them
// (src/key.rs): from a JS value to the stored `action`, with the same
// refusals, and the forms a stored key takes in messages. The limits and the
// wording are rules.js's; __test__/server/conformance.test.mjs checks each refusal
// against the real manager's.

const { MAX_KEY_BYTES, MAX_KEY_DEPTH, messages, wrapArray, rustNumber } = require('./rules.js')

const why = messages.keyWhy

/** Why a key is refused, turned into the TypeError by actionOf. */
class KeyProblem extends Error {}

/** A `{ … }` object (or one made with a null prototype): not an array, a class instance or a Map. */
function isPlainObject(value) {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return false
  const proto = Object.getPrototypeOf(value)
  return proto === null || proto === Object.prototype
}

function scalar(value) {
  if (typeof value === 'string') {
    if (value === '') throw new KeyProblem(why.emptyString)
    return value
  }
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new KeyProblem(why.notFinite(value))
    return value
  }
  if (typeof value === 'boolean' || value === null) return value
  throw new KeyProblem(why.nested(typeof value === 'object' ? 'value' : typeof value))
}

function convert(value, depth) {
  if (depth > MAX_KEY_DEPTH) throw new KeyProblem(why.tooDeep)
  if (value === null || typeof value !== 'object') return scalar(value)
  if (Array.isArray(value)) return Array.from(value, (item) => convert(item, depth + 1))
  if (!isPlainObject(value)) throw new KeyProblem(why.nestedNotPlain(value))
  const out = {}
  for (const name of Object.keys(value)) {
    if (name.startsWith('$')) throw new KeyProblem(why.dollarField(name))
    if (name.includes('\0')) throw new KeyProblem(why.nulField(name))
    if (value[name] === undefined) continue // dropped, as the Node driver drops them
    out[name] = convert(value[name], depth + 1)
  }
  return out
}

/** The size of `{ action: value }` as BSON, for the key size bound. */
function bsonSize(value) {
  const utf8 = (s) => Buffer.byteLength(s, 'utf8')
  const element = (name, v) => 1 + utf8(name) + 1 + valueSize(v)
  const valueSize = (v) => {
    if (typeof v === 'string') return 4 + utf8(v) + 1
    if (typeof v === 'number') return Number.isInteger(v) && v >= -(2 ** 31) && v < 2 ** 31 && !Object.is(v, -0) ? 4 : 8
    if (typeof v === 'boolean') return 1
    if (v === null) return 0
    const entries = Array.isArray(v) ? v.map((item, i) => [String(i), item]) : Object.entries(v)
    return 4 + entries.reduce((sum, [k, item]) => sum + element(k, item), 0) + 1
  }
  return 4 + element('action', value) + 1
}

/** The stored `action` of a key (arrays as `{ _key_array: key }`, as mongo-locks stores them); a TypeError on a bad key. */
function actionOf(key) {
  let action
  try {
    if (key === undefined || key === null) throw new KeyProblem(why.missing)
    if (typeof key === 'function') throw new KeyProblem(why.function)
    if (typeof key === 'symbol') throw new KeyProblem(why.symbol)
    if (typeof key === 'string' || typeof key === 'number') action = scalar(key)
    else if (Array.isArray(key)) action = wrapArray(convert(key, 1))
    else if (typeof key === 'object') {
      if (!isPlainObject(key)) throw new KeyProblem(why.notPlain)
      action = convert(key, 1)
    } else throw new KeyProblem(why.otherType)
    if (typeof action === 'string' && action.includes('\0')) throw new KeyProblem(why.nulString)
    const size = bsonSize(action)
    if (size > MAX_KEY_BYTES) throw new KeyProblem(why.tooLarge(size))
  } catch (err) {
    if (err instanceof KeyProblem) throw new TypeError(messages.invalidKey(key, err.message))
    throw err
  }
  return action
}

/** A stored value's identity: one string per distinct value (strings JSON-quoted, so none can pass for another). */
function shown(value) {
  if (typeof value === 'string') return JSON.stringify(value)
  if (value === null || typeof value !== 'object') return String(value)
  if (Array.isArray(value)) return `[${value.map(shown).join(', ')}]`
  const entries = Object.entries(value)
  return entries.length === 0 ? '{}' : `{ ${entries.map(([k, v]) => `${JSON.stringify(k)}: ${shown(v)}`).join(', ')} }`
}

/** A stored value as the Rust core's messages show it (the bson crate's Display): `"a"`, `42`, `{ "a": [1, 2] }`, strings unescaped. */
function bsonDisplay(value) {
  if (typeof value === 'string') return `"${value}"`
  if (typeof value === 'number') return Object.is(value, -0) ? '-0' : rustNumber(value)
  if (value === null || typeof value !== 'object') return String(value)
  if (Array.isArray(value)) return `[${value.map(bsonDisplay).join(', ')}]`
  const entries = Object.entries(value)
  return entries.length === 0 ? '{}' : `{ ${entries.map(([k, v]) => `"${k}": ${bsonDisplay(v)}`).join(', ')} }`
}

/** A key as people read it (src/key.rs key_text): a string key as is, anything else in its stored form. */
const keyText = (action) => (typeof action === 'string' ? action : bsonDisplay(action))

module.exports = { actionOf, shown, bsonDisplay, keyText, isPlainObject }
