// The torture run: looks for two holders of one key under the faults of the
// field. `npm run torture -- --minutes N` (or `--seconds N`; CI runs 60 s).
//
// It starts FerretDB and a Toxiproxy in front of it, then N worker processes
// (torture-worker.mjs, beside it), each with its wall clock under libfaketime's
// control (a timestamp file per worker), locking a few keys through the proxy
// with a short ttl and fencing. Meanwhile a random schedule injects:
//   latency (200-1500 ms on replies), a server that stops answering (1-5 s),
//   connection resets, wall-clock steps of 1-2.5 s either way on one worker,
//   and SIGSTOP of one worker for longer than the ttl (then SIGCONT).
// At the end it checks the workers' records:
//   overlaps     two believed-held intervals of one key that overlap;
//   tokenOrder   fencing tokens not strictly increasing in holder order;
//   staleWrites  the register accepted a token lower than one it had
//                accepted before (its own log, in the order it accepted);
//   hung/crashed a worker that did not finish in time, or exited non-zero
//                (an unhandled rejection counts);
// prints the counts as one JSON line and exits 1 on any violation.
import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { MongoClient } from 'mongodb'
import { startFerretDB } from './ferretdb.mjs'
import { startToxiproxy } from './toxiproxy.mjs'
import { faketimeLibrary, FAKETIME_INSTALL } from './faketime.mjs'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
const { values: args } = parseArgs({
  options: {
    seconds: { type: 'string' },
    minutes: { type: 'string' },
    processes: { type: 'string', default: '4' },
    keys: { type: 'string', default: '3' },
    ttl: { type: 'string', default: '3000' },
    seed: { type: 'string' },
  },
})
const seconds = args.minutes ? Number(args.minutes) * 60 : Number(args.seconds ?? 60)
const processes = Number(args.processes)
const ttlMs = Number(args.ttl)
for (const [name, n] of [['seconds', seconds], ['processes', processes], ['ttl', ttlMs], ['keys', Number(args.keys)]]) {
  if (!Number.isFinite(n) || n <= 0) throw new TypeError(`torture: --${name} must be a positive number, got ${n}`)
}

// A seeded generator, so a failing schedule can be replayed with --seed.
let seed = Number(args.seed ?? Math.floor(Math.random() * 2 ** 31))
const firstSeed = seed
const random = () => {
  seed = (seed * 1103515245 + 12345) % 2 ** 31
  return seed / 2 ** 31
}
const between = (lo, hi) => lo + random() * (hi - lo)
const pick = (list) => list[Math.floor(random() * list.length)]
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
/** Resolves to `value` after `ms`, without keeping the process alive. */
const after = (ms, value) => new Promise((r) => setTimeout(() => r(value), ms).unref())
const monotonicMs = () => Number(process.hrtime.bigint() / 1000n) / 1000

const LIBFAKETIME = faketimeLibrary()
if (!LIBFAKETIME) throw new Error(`torture: libfaketime is missing: ${FAKETIME_INSTALL}`)

const dir = mkdtempSync(path.join(os.tmpdir(), 'mongo-locks-torture-'))
const server = await startFerretDB()
const toxiproxy = await startToxiproxy()
const faults = { latency: 0, hang: 0, reset: 0, step: 0, pause: 0 }
const workers = []
let registerClient
try {
  const proxy = await toxiproxy.proxy('mongo', server.port)
  const proxied = `mongodb://127.0.0.1:${proxy.port}/?directConnection=true`
  registerClient = await MongoClient.connect(server.url)
  const register = registerClient.db('torture').collection('register')
  await register.insertMany(Array.from({ length: Number(args.keys) }, (_, i) => ({ _id: `key-${i}`, token: 0, writes: 0, log: [] })))

  const startAt = monotonicMs()
  const endAt = startAt + seconds * 1000
  for (let i = 0; i < processes; i++) {
    const clockFile = path.join(dir, `clock-${i}`)
    const records = path.join(dir, `records-${i}.jsonl`)
    writeFileSync(clockFile, '+0')
    writeFileSync(records, '')
    const child = spawn(process.execPath, [path.join(root, '__test__', 'support', 'torture-worker.mjs'), String(i), records, args.keys, String(ttlMs), String(endAt)], {
      cwd: root,
      stdio: ['ignore', 'ignore', 'pipe'],
      env: {
        ...process.env,
        MONGO_URL: proxied,
        REGISTER_URL: server.url,
        LD_PRELOAD: LIBFAKETIME,
        FAKETIME_TIMESTAMP_FILE: clockFile,
        FAKETIME_NO_CACHE: '1',
        FAKETIME_DONT_FAKE_MONOTONIC: '1',
      },
    })
    let stderr = ''
    child.stderr.on('data', (d) => { stderr = (stderr + d).slice(-8192) })
    const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })))
    workers.push({ child, clockFile, records, offset: 0, paused: false, exited, stderr: () => stderr })
  }

  // The fault schedule: one network fault at a time, steps and pauses
  // independently, until a few seconds before the end (so the run ends calm).
  const quietAt = endAt - Math.min(5000, seconds * 200)
  // Kinds drawn from a shuffled bag (each once, then refilled), not
  // independently: a short run gets every kind, which the test checks.
  let bag = []
  const nextKind = () => {
    if (bag.length === 0) bag = ['latency', 'hang', 'reset'].map((k) => [random(), k]).sort((a, b) => a[0] - b[0]).map(([, k]) => k)
    return bag.pop()
  }
  const network = async () => {
    while (monotonicMs() < quietAt) {
      await sleep(between(1000, 3000))
      const kind = nextKind()
      faults[kind]++
      if (kind === 'latency') {
        const name = await proxy.addToxic('latency', { latency: Math.round(between(200, 1500)), jitter: 100 })
        await sleep(between(1000, 4000))
        await proxy.removeToxic(name)
      } else if (kind === 'hang') {
        const name = await proxy.addToxic('timeout', { timeout: 0 })
        await sleep(between(1000, 5000))
        await proxy.removeToxic(name)
      } else {
        const name = await proxy.addToxic('reset_peer', { timeout: Math.round(between(0, 300)) })
        await sleep(between(200, 1000))
        await proxy.removeToxic(name)
      }
    }
  }
  const steps = async () => {
    while (monotonicMs() < quietAt) {
      await sleep(between(1500, 4000))
      const w = pick(workers)
      const by = (random() < 0.5 ? -1 : 1) * between(1000, 2500)
      w.offset = Math.max(-5000, Math.min(5000, w.offset + by))
      writeFileSync(w.clockFile, `${w.offset >= 0 ? '+' : ''}${(w.offset / 1000).toFixed(3)}`)
      faults.step++
    }
  }
  const pauses = async () => {
    while (monotonicMs() < quietAt) {
      await sleep(between(3000, 8000))
      const w = pick(workers.filter((x) => !x.paused))
      if (!w || w.child.exitCode !== null) continue
      w.paused = true
      w.child.kill('SIGSTOP')
      faults.pause++
      await sleep(ttlMs + between(500, 2000))
      w.child.kill('SIGCONT')
      w.paused = false
    }
  }
  await Promise.all([network(), steps(), pauses()])
  await proxy.clearToxics()
  for (const w of workers) w.child.kill('SIGCONT')

  // Every worker must finish by itself: its last lock call is bounded, and
  // so is close().
  const results = await Promise.all(workers.map((w) => Promise.race([
    w.exited,
    after(Math.max(0, endAt - monotonicMs()) + 30_000, { hung: true }),
  ])))
  for (const w of workers) if (w.child.exitCode === null) w.child.kill('SIGKILL')

  const records = workers.flatMap((w) => readFileSync(w.records, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)))
  const report = check(records, await register.find().toArray())
  report.seed = firstSeed
  report.seconds = seconds
  report.processes = processes
  report.ttlMs = ttlMs
  report.faults = faults
  report.hung = results.filter((r) => r.hung).length
  report.crashed = results.filter((r) => !r.hung && r.code !== 0).length
  report.unhandled = records.filter((r) => r.type === 'unhandled').length
  report.finished = records.filter((r) => r.type === 'done').length
  report.violations = report.overlaps + report.tokenOrder + report.staleWrites + report.hung + report.crashed
  if (report.crashed || report.hung) {
    report.stderr = workers.map((w) => w.stderr()).filter(Boolean)
    report.unhandledMessages = records.filter((r) => r.type === 'unhandled').map((r) => r.message)
  }
  console.log(JSON.stringify(report))
  process.exitCode = report.violations || report.sections === 0 ? 1 : 0
} finally {
  for (const w of workers) if (w.child.exitCode === null) { w.child.kill('SIGCONT'); w.child.kill('SIGKILL') }
  await registerClient?.close()
  await toxiproxy.stop()
  await server.stop()
  rmSync(dir, { recursive: true, force: true })
}

/** The checker: counts of what must never happen, and of what did. */
function check(records, registers) {
  const holds = records.filter((r) => r.type === 'hold')
  const writes = records.filter((r) => r.type === 'write')
  const byKey = new Map()
  for (const h of holds) byKey.set(h.key, [...(byKey.get(h.key) ?? []), h])
  let overlaps = 0
  let maxOverlapMs = 0
  let tokenOrder = 0
  const examples = []
  for (const list of byKey.values()) {
    list.sort((a, b) => a.from - b.from)
    let reach = null // the interval reaching furthest so far
    for (let i = 0; i < list.length; i++) {
      const h = list[i]
      if (reach && h.from < reach.to) {
        overlaps++
        maxOverlapMs = Math.max(maxOverlapMs, Math.min(reach.to, h.to) - h.from)
        if (examples.length < 5) examples.push({ key: h.key, first: reach, second: h })
      }
      if (i > 0 && h.token <= list[i - 1].token) tokenOrder++
      if (!reach || h.to > reach.to) reach = h
    }
  }
  let staleWrites = 0
  for (const { log } of registers) {
    log.forEach((token, i) => { if (i > 0 && token < Math.max(...log.slice(0, i))) staleWrites++ })
  }
  const logged = registers.reduce((n, r) => n + r.log.length, 0)
  const errors = records.filter((r) => r.type === 'error')
  return {
    sections: holds.length,
    keys: byKey.size,
    overlaps,
    maxOverlapMs: Math.round(maxOverlapMs * 10) / 10,
    tokenOrder,
    staleWrites,
    writesAccepted: writes.filter((w) => w.accepted).length,
    writesLogged: logged,
    writesRefusedByFencing: writes.filter((w) => !w.accepted).length,
    lockErrors: errors.length,
    examples,
  }
}
