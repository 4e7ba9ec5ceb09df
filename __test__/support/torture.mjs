// The torture run: looks for two holders of one key, and for a once() key
// run twice or replayed wrong, under the faults of the field.
// `npm run torture -- --minutes N` (or `--seconds N`; CI runs 60 s).
//
// It starts FerretDB and a Toxiproxy in front of it, then N worker processes
// (torture-worker.mjs, beside it), each with its wall clock under libfaketime's
// control (a timestamp file per worker), locking a few keys through the proxy
// with a short ttl and fencing, and calling once() on a small set of keys
// that changes every few seconds. Meanwhile a random schedule injects:
//   latency (200-1500 ms on replies), a server that stops answering (1-5 s),
//   connection resets, wall-clock steps of 1-2.5 s either way on one worker,
//   SIGSTOP of one worker for longer than the ttl (then SIGCONT; half the
//   time one that is inside a once() fn), and SIGKILL of a worker inside a
//   once() fn, replaced by a new worker process.
// At the end it checks the workers' records:
//   overlaps     two believed-held intervals of one key that overlap;
//   tokenOrder   fencing tokens not strictly increasing in holder order;
//   staleWrites  the register accepted a token lower than one it had
//                accepted before (its own log, in the order it accepted);
//   onceOverlaps two believed-held intervals of runs of one once() key that
//                overlap (a run's interval: from its first read of
//                signal.aborted that gave false to its last one, or to the
//                SIGKILL of its process if it never ended);
//   runsAfterCompletion  a run of a key that started after a run of it
//                began whose result was stored, before that record's ttl
//                had passed (counted from the end of the stored run's fn);
//   wrongReplays a call given a value whose key is not the call's, or that
//                is not the value of a run of that key that may have been
//                stored (one that was not refused), or a key whose calls
//                got more than one distinct stored value;
//   onceTokenOrder    fencing tokens of a key's runs not strictly
//                increasing in the order they started;
//   takeoversWithoutLoss a run that started while an earlier run of the key
//                had stored nothing, though nothing says that run's holder
//                was lost: its process was not killed or paused during it,
//                its signal did not abort, its call did not fail;
//   hung/crashed a worker that did not finish in time, or exited non-zero
//                (an unhandled rejection counts; the workers killed on
//                purpose do not);
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
    // once(): keys change every `once-every` ms; a finished record lives
    // `once-ttl` ms, longer than any key is called, so within a run a key
    // never legitimately runs again after its result was stored.
    'once-every': { type: 'string', default: '5000' },
    'once-ttl': { type: 'string', default: '60000' },
    seed: { type: 'string' },
    // Leaves the workers' records (JSON lines) in place and names their folder in the report.
    keep: { type: 'boolean', default: false },
  },
})
const seconds = args.minutes ? Number(args.minutes) * 60 : Number(args.seconds ?? 60)
const processes = Number(args.processes)
const ttlMs = Number(args.ttl)
const onceEveryMs = Number(args['once-every'])
const onceTtlMs = Number(args['once-ttl'])
for (const [name, n] of [['seconds', seconds], ['processes', processes], ['ttl', ttlMs], ['keys', Number(args.keys)], ['once-every', onceEveryMs], ['once-ttl', onceTtlMs]]) {
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
const faults = { latency: 0, hang: 0, reset: 0, step: 0, pause: 0, kill: 0 }
const workers = []
// What the schedule did to the workers, on the monotonic clock, for the
// checker: { type: 'pause', worker, from, to } and { type: 'kill', worker, at }.
const events = []
let registerClient
try {
  const proxy = await toxiproxy.proxy('mongo', server.port)
  const proxied = `mongodb://127.0.0.1:${proxy.port}/?directConnection=true`
  registerClient = await MongoClient.connect(server.url)
  const register = registerClient.db('torture').collection('register')
  await register.insertMany(Array.from({ length: Number(args.keys) }, (_, i) => ({ _id: `key-${i}`, token: 0, writes: 0, log: [] })))

  const startAt = monotonicMs()
  const endAt = startAt + seconds * 1000
  const startWorker = (i) => {
    const clockFile = path.join(dir, `clock-${i}`)
    const records = path.join(dir, `records-${i}.jsonl`)
    writeFileSync(clockFile, '+0')
    writeFileSync(records, '')
    const child = spawn(process.execPath, [
      path.join(root, '__test__', 'support', 'torture-worker.mjs'),
      String(i), records, args.keys, String(ttlMs), String(endAt), String(startAt), String(onceEveryMs), String(onceTtlMs),
    ], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
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
    const w = { id: i, child, clockFile, records, offset: 0, paused: false, killed: false, inRun: false, exited, stderr: () => stderr }
    // `run <key>` / `idle` lines: whether the worker is inside a once() fn now.
    let line = ''
    child.stdout.on('data', (d) => {
      const lines = (line + d).split('\n')
      line = lines.pop()
      for (const l of lines) w.inRun = l.startsWith('run ')
    })
    workers.push(w)
  }
  for (let i = 0; i < processes; i++) startWorker(i)
  const alive = () => workers.filter((w) => !w.killed && w.child.exitCode === null)
  /** A live worker not paused, one inside a once() fn if `inRun` and there is one within 3 s. */
  const choose = async (inRun) => {
    for (const deadline = monotonicMs() + 3000; inRun && monotonicMs() < deadline; await sleep(20)) {
      const running = alive().filter((w) => !w.paused && w.inRun)
      if (running.length) return pick(running)
    }
    return pick(alive().filter((w) => !w.paused))
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
      const w = pick(alive())
      if (!w) continue
      const by = (random() < 0.5 ? -1 : 1) * between(1000, 2500)
      w.offset = Math.max(-5000, Math.min(5000, w.offset + by))
      writeFileSync(w.clockFile, `${w.offset >= 0 ? '+' : ''}${(w.offset / 1000).toFixed(3)}`)
      faults.step++
    }
  }
  const pauses = async () => {
    while (monotonicMs() < quietAt) {
      await sleep(between(3000, 8000))
      const w = await choose(random() < 0.5)
      if (!w || w.killed || w.child.exitCode !== null) continue
      w.paused = true
      const from = monotonicMs()
      w.child.kill('SIGSTOP')
      faults.pause++
      await sleep(ttlMs + between(500, 2000))
      w.child.kill('SIGCONT')
      events.push({ type: 'pause', worker: w.id, from, to: monotonicMs() })
      w.paused = false
    }
  }
  // A worker killed inside a once() fn (no free, no close, no exit hooks),
  // and a new worker process in its place, so as many keep running.
  const kills = async () => {
    await sleep(between(3000, 6000))
    while (monotonicMs() < quietAt) {
      const w = await choose(true)
      if (w && w.child.exitCode === null && monotonicMs() < quietAt) {
        w.killed = true
        events.push({ type: 'kill', worker: w.id, at: monotonicMs() })
        w.child.kill('SIGKILL')
        faults.kill++
        startWorker(workers.length)
      }
      await sleep(between(6000, 12000))
    }
  }
  await Promise.all([network(), steps(), pauses(), kills()])
  await proxy.clearToxics()
  for (const w of workers) w.child.kill('SIGCONT')

  // Every worker must finish by itself: its last lock call is bounded, and
  // so is close().
  const ended = workers.filter((w) => !w.killed)
  const results = await Promise.all(ended.map((w) => Promise.race([
    w.exited,
    after(Math.max(0, endAt - monotonicMs()) + 30_000, { hung: true }),
  ])))
  for (const w of workers) if (w.child.exitCode === null) w.child.kill('SIGKILL')

  const records = workers.flatMap((w) => readFileSync(w.records, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)))
  const report = check(records, await register.find().toArray(), events, onceTtlMs)
  report.seed = firstSeed
  report.seconds = seconds
  report.processes = processes
  report.ttlMs = ttlMs
  report.onceTtlMs = onceTtlMs
  report.faults = faults
  if (args.keep) report.records = dir
  report.hung = results.filter((r) => r.hung).length
  report.crashed = results.filter((r) => !r.hung && r.code !== 0).length
  report.unhandled = records.filter((r) => r.type === 'unhandled').length
  report.finished = records.filter((r) => r.type === 'done').length
  report.violations = report.overlaps + report.tokenOrder + report.staleWrites +
    report.onceOverlaps + report.runsAfterCompletion + report.wrongReplays + report.onceTokenOrder + report.takeoversWithoutLoss +
    report.hung + report.crashed
  if (report.crashed || report.hung) {
    report.stderr = ended.map((w) => w.stderr()).filter(Boolean)
    report.unhandledMessages = records.filter((r) => r.type === 'unhandled').map((r) => r.message)
  }
  console.log(JSON.stringify(report))
  process.exitCode = report.violations || report.sections === 0 ? 1 : 0
} finally {
  for (const w of workers) if (w.child.exitCode === null) { w.child.kill('SIGCONT'); w.child.kill('SIGKILL') }
  await registerClient?.close()
  await toxiproxy.stop()
  await server.stop()
  if (!args.keep) rmSync(dir, { recursive: true, force: true })
}

/** The checker: counts of what must never happen, and of what did. */
function check(records, registers, events, onceTtlMs) {
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
    ...checkOnce(records, events, onceTtlMs),
  }
}

/**
 * The once() part of the checker (see the top of the file for each count).
 * A run is identified by its worker, key and start time (`from`), which its
 * `once-start`, `once-run` and `once-call` records share.
 */
function checkOnce(records, events, onceTtlMs) {
  const id = (r, from = r.from) => `${r.worker}/${r.key}/${from}`
  const killedAt = new Map(events.filter((e) => e.type === 'kill').map((e) => [e.worker, e.at]))
  const pauses = events.filter((e) => e.type === 'pause')
  const ends = new Map(records.filter((r) => r.type === 'once-run').map((r) => [id(r), r]))
  const calls = records.filter((r) => r.type === 'once-call')
  const callOf = new Map(calls.filter((c) => c.ran !== null).map((c) => [id(c, c.ran), c]))
  const runs = records.filter((r) => r.type === 'once-start').map((r) => {
    const end = ends.get(id(r))
    const call = callOf.get(id(r))
    const killed = killedAt.get(r.worker)
    // Never ended: its process was killed in fn, and believed it held the
    // record until then at most.
    const held = end ? end.held : killed !== undefined ? [r.from, killed] : null
    return { ...r, end, call, held, until: end ? end.endedAt : killed ?? Infinity }
  })
  const byKey = new Map()
  for (const r of runs) byKey.set(r.key, [...(byKey.get(r.key) ?? []), r])

  let onceOverlaps = 0
  let runsAfterCompletion = 0
  let onceTokenOrder = 0
  let onceTakeovers = 0
  let takeoversWithoutLoss = 0
  const onceExamples = []
  const example = (what, ...items) => { if (onceExamples.length < 5) onceExamples.push({ what, items: items.map(({ call, end, ...r }) => ({ ...r, outcome: call?.outcome })) }) }
  for (const list of byKey.values()) {
    list.sort((a, b) => a.from - b.from)
    let reach = null
    for (const r of list.filter((x) => x.held)) {
      if (reach && r.held[0] < reach.held[1]) {
        onceOverlaps++
        example('overlap', reach, r)
      }
      if (!reach || r.held[1] > reach.held[1]) reach = r
    }
    for (let i = 0; i < list.length; i++) {
      const r = list[i]
      // A stored result: no run of the key may start after this one did
      // until its record expires (a run starting meanwhile would have had to
      // take this record over, and then this completion would be refused).
      if (r.call?.outcome === 'stored') {
        const later = list.filter((x) => x.from > r.from && x.from < r.end.endedAt + onceTtlMs)
        runsAfterCompletion += later.length
        for (const x of later) example('run after a stored run', r, x)
      }
      if (i === 0) continue
      const prev = list[i - 1]
      if (r.token <= prev.token) {
        onceTokenOrder++
        example('token order', prev, r)
      }
      if (prev.call?.outcome === 'stored') continue // counted above
      // A takeover: the previous run's record was still there (it stored
      // nothing, or not yet), so its holder must have been lost.
      onceTakeovers++
      const lost = prev.end?.aborted ||
        ['lost', 'unknown'].includes(prev.call?.outcome) ||
        (killedAt.has(prev.worker) && killedAt.get(prev.worker) >= prev.from) ||
        pauses.some((p) => p.worker === prev.worker && p.to > prev.from && p.from < Math.min(prev.until, r.from))
      if (!lost) {
        takeoversWithoutLoss++
        example('takeover without a lost holder', prev, r)
      }
    }
  }

  // What a call may be given: the value of a run of its key that was not
  // refused (stored, or maybe stored when the answer was lost, or its
  // process killed before it could tell).
  const storable = new Map()
  for (const r of runs) if (r.end && r.call?.outcome !== 'lost') storable.set(r.end.nonce, r)
  let wrongReplays = 0
  const given = new Map()
  for (const c of calls.filter((x) => x.outcome === 'stored' || x.outcome === 'replay')) {
    const run = storable.get(c.got.nonce)
    const right = c.got.key === c.key && run && run.key === c.key && run.worker === c.got.worker && String(run.token) === c.got.token
    if (!right) {
      wrongReplays++
      if (onceExamples.length < 5) onceExamples.push({ what: 'wrong value', call: c })
    }
    given.set(c.key, new Set([...(given.get(c.key) ?? []), c.got.nonce]))
  }
  for (const [key, nonces] of given) {
    if (nonces.size > 1) {
      wrongReplays += nonces.size - 1
      if (onceExamples.length < 5) onceExamples.push({ what: 'several stored values', key, nonces: [...nonces] })
    }
  }
  const outcomes = {}
  for (const c of calls) outcomes[c.outcome] = (outcomes[c.outcome] ?? 0) + 1
  return {
    onceCalls: calls.length,
    onceKeys: byKey.size,
    onceRuns: runs.length,
    onceReplays: outcomes.replay ?? 0,
    onceTakeovers,
    onceOutcomes: outcomes,
    onceOverlaps,
    runsAfterCompletion,
    wrongReplays,
    onceTokenOrder,
    takeoversWithoutLoss,
    onceExamples,
  }
}
