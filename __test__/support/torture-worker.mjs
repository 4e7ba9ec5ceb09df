// One process of the torture run (torture.mjs starts several, under
// faults). Until <endAt> on the machine's monotonic clock it takes random
// keys with fencing, holds each for a random time, and records:
//   - each critical section's believed-held interval: from the first read of
//     lock.locked that gave true to the last one that did, timestamps taken
//     on the monotonic clock (shared by all processes on this machine and
//     untouched by libfaketime) just before each read;
//   - each write to the fenced register (a document per key that accepts a
//     write only if its token is at least the register's, and logs the
//     tokens it accepted in order), accepted or not.
// Records go to <recordFile>, one JSON line each, as they happen.
// Usage: node torture-worker.mjs <id> <recordFile> <keys> <ttlMs> <endAt>
// Env: MONGO_URL (locks: through the fault proxy), REGISTER_URL (the register: direct).
import { MongoClient } from 'mongodb'
import { appendFileSync } from 'node:fs'
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
const { LockManager, MongoLocksError } = require('../../index.js')
const [id, recordFile, keyCount, ttlMs, endAt] = process.argv.slice(2)
const monotonicMs = () => Number(process.hrtime.bigint() / 1000n) / 1000
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const random = (lo, hi) => lo + Math.random() * (hi - lo)
const record = (fields) => appendFileSync(recordFile, JSON.stringify({ worker: Number(id), ...fields }) + '\n')

process.on('unhandledRejection', (err) => {
  record({ type: 'unhandled', message: String(err?.stack ?? err) })
  process.exit(3)
})

const locksClient = new MongoClient(process.env.MONGO_URL)
const registerClient = await MongoClient.connect(process.env.REGISTER_URL)
const register = registerClient.db('torture').collection('register')
const locker = new LockManager(locksClient.db('torture').collection('mongo-locks'), {
  ttlMs: Number(ttlMs),
  operationTimeoutMs: 2000,
  serverSelectionTimeoutMs: 2000,
})

let errors = 0
while (monotonicMs() < Number(endAt)) {
  const key = `key-${Math.floor(Math.random() * Number(keyCount))}`
  let lock
  try {
    lock = await locker.lock(key, { waitMs: 2000, fencing: true })
  } catch (err) {
    if (!(err instanceof MongoLocksError)) throw err
    errors++
    record({ type: 'error', during: 'lock', message: err.message })
    await sleep(random(20, 200))
    continue
  }
  if (!lock) continue
  const token = Number(lock.fencingToken)
  let from = null
  let to = null
  let at = monotonicMs()
  if (lock.locked) from = to = at
  const holdUntil = monotonicMs() + random(20, 400)
  let wrote = false
  while (from !== null && monotonicMs() < holdUntil) {
    await sleep(random(5, 30))
    at = monotonicMs()
    if (!lock.locked) break
    to = at
    if (!wrote && Math.random() < 0.5) {
      wrote = true
      const sentAt = monotonicMs()
      const res = await register.updateOne({ _id: key, token: { $lte: token } }, { $set: { token }, $inc: { writes: 1 }, $push: { log: token } })
      record({ type: 'write', key, token, sentAt, accepted: res.matchedCount === 1 })
    }
  }
  if (from !== null) record({ type: 'hold', key, token, from, to })
  try {
    await lock.free()
  } catch (err) {
    if (!(err instanceof MongoLocksError)) throw err
    errors++
    record({ type: 'error', during: 'free', message: err.message })
  }
}
try {
  await locker.close()
} catch (err) {
  record({ type: 'error', during: 'close', message: err.message })
}
await Promise.allSettled([locksClient.close(), registerClient.close()])
record({ type: 'done', errors })
