// One process of the torture run (torture.mjs starts several, under
// faults). Until <endAt> on the machine's monotonic clock it does, at
// random, one of two things, and records what happened:
//
// Locks: takes a random key with fencing, holds it for a random time, and
// records each critical section's believed-held interval: from the first
// read of lock.locked that gave true to the last one that did, timestamps
// taken on the monotonic clock (shared by all processes on this machine and
// untouched by libfaketime) just before each read.
//
// once(): calls locker.once(k, fn, { payload, waitMs }) on a key of a small
// set that changes every <onceEveryMs> (keys named by the period of the
// monotonic clock they belong to, so every process calls the same ones; a
// call takes the current period's keys or one of the two before). fn
// records `once-start` (key, token) as it starts, then reads signal.aborted
// every few ms for a random time and records `once-run`: its believed-held
// interval, defined as for a lock section with signal.aborted === false in
// place of locked === true, whether the signal aborted, and the value it
// returns (key, worker, token, a random nonce). The call then records
// `once-call`: what it got back (the value, its own run's or a replay) or
// the error's name. The record lives <onceTtlMs> once finished.
//
// Both write to the fenced register (a document per key that accepts a
// write only if its token is at least the register's, and logs the tokens
// it accepted in order) once in a while, recording each write, accepted or
// not. Records go to <recordFile>, one JSON line each, as they happen
// (synchronously: a process killed mid-run leaves every line it wrote).
// On stdout it says `run <key>` when a fn starts and `idle` when it ends,
// so torture.mjs can kill a process mid-run.
// Usage: node torture-worker.mjs <id> <recordFile> <keys> <ttlMs> <endAt> <startAt> <onceEveryMs> <onceTtlMs>
// Env: MONGO_URL (locks: through the fault proxy), REGISTER_URL (the register: direct).
import { MongoClient } from 'mongodb'
import { appendFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { randomUUID } from 'node:crypto'

const require = createRequire(import.meta.url)
const { LockManager, MongoLocksError, LockLostError, OnceInProgressError } = require('../../index.js')
const [id, recordFile, keyCount, ttlMs, endAt, startAt, onceEveryMs, onceTtlMs] = process.argv.slice(2)
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
  if (Math.random() < 0.5) await section()
  else await onceCall()
}
try {
  await locker.close()
} catch (err) {
  record({ type: 'error', during: 'close', message: err.message })
}
await Promise.allSettled([locksClient.close(), registerClient.close()])
record({ type: 'done', errors, stats: locker.stats() })

/** A write to the fenced register of `key` with `token`, recorded. */
async function write(key, token) {
  const sentAt = monotonicMs()
  let accepted
  try {
    // once() keys get their register document at their first write; a
    // write that meets a higher token then fails on the unique _id: refused.
    const res = await register.updateOne({ _id: key, token: { $lte: token } }, { $set: { token }, $inc: { writes: 1 }, $push: { log: token } }, { upsert: key.startsWith('once-') })
    accepted = res.matchedCount === 1 || res.upsertedCount === 1
  } catch (err) {
    if (err?.code !== 11000) throw err
    accepted = false
  }
  record({ type: 'write', key, token, sentAt, accepted })
}

/** One critical section on a random lock key. */
async function section() {
  const key = `key-${Math.floor(Math.random() * Number(keyCount))}`
  let lock
  try {
    lock = await locker.lock(key, { waitMs: 2000, fencing: true })
  } catch (err) {
    if (!(err instanceof MongoLocksError)) throw err
    errors++
    record({ type: 'error', during: 'lock', message: err.message })
    await sleep(random(20, 200))
    return
  }
  if (!lock) return
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
      await write(key, token)
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

/** One once() call on a key of the current period or one of the two before. */
async function onceCall() {
  const period = Math.floor((monotonicMs() - Number(startAt)) / Number(onceEveryMs)) - Math.floor(Math.random() * 3)
  const key = `once-${Math.max(0, period)}-${Math.floor(Math.random() * 3)}`
  const calledAt = monotonicMs()
  let ran = null
  const fn = async ({ signal, fencingToken }) => {
    const token = Number(fencingToken)
    ran = { key, token, from: monotonicMs() }
    process.stdout.write(`run ${key}\n`)
    record({ type: 'once-start', ...ran })
    let from = null
    let to = null
    let at = monotonicMs()
    if (!signal.aborted) from = to = at
    const runUntil = monotonicMs() + random(50, 1500)
    let wrote = false
    while (from !== null && monotonicMs() < runUntil) {
      await sleep(random(5, 30))
      at = monotonicMs()
      if (signal.aborted) break
      to = at
      if (!wrote && Math.random() < 0.3) {
        wrote = true
        await write(key, token)
      }
    }
    const value = { key, worker: Number(id), token: fencingToken, nonce: randomUUID() }
    record({ type: 'once-run', key, token, from: ran.from, held: from === null ? null : [from, to], aborted: signal.aborted, endedAt: monotonicMs(), nonce: value.nonce })
    process.stdout.write('idle\n')
    return value
  }
  const call = { type: 'once-call', key, calledAt }
  try {
    const value = await locker.once(key, fn, { payload: { key }, waitMs: 2000, ttlMs: Number(onceTtlMs) })
    Object.assign(call, { outcome: ran ? 'stored' : 'replay', got: { ...value, token: String(value.token) } })
  } catch (err) {
    if (!(err instanceof MongoLocksError || err instanceof LockLostError || err instanceof OnceInProgressError)) throw err
    // LockLostError: this run's record was taken over, nothing stored.
    // MongoLocksError after fn ran: unknown whether the outcome was stored.
    const outcome = err instanceof LockLostError ? 'lost' : err instanceof OnceInProgressError ? 'busy' : ran ? 'unknown' : 'error'
    Object.assign(call, { outcome, error: err.name, message: outcome === 'unknown' || outcome === 'error' ? err.message : undefined })
    if (outcome === 'error' || outcome === 'unknown') errors++
    if (outcome === 'error') await sleep(random(20, 200))
  }
  record({ ...call, endedAt: monotonicMs(), ran: ran ? ran.from : null })
}
