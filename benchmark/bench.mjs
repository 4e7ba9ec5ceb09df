// `npm run bench [-- --quick] [-- --runs N]`: mongo-locks-native against
// stock mongo-locks 3.2 (on the Node mongodb driver), same server, same run.
// Also: `--locks N[,M…]` (locks held in scenario 4, measured once per count;
// full mode: 1,000 and 10,000), `--postgresql` (FerretDB on a throwaway
// PostgreSQL instead of SQLite), `--only holding,eventLoop`
// (a subset of: uncontended, throughput, contention, holding, eventLoop, cpu, burst,
// handover, once). Scenario 8 (handover) forks its own participant processes.
// Scenario 9 (once) measures ours' once() beside both libraries' lock+free.
// `--burst N` sets the number of concurrent acquisitions of scenario 7.
// The server is MONGO_URL when set, else a throwaway local FerretDB. On the
// local server, scenario 4 talks through a relay that counts the bytes each
// library sends and receives (wire.mjs).
//
// Every measurement (scenario × library × run) runs in a fresh process
// forked with --expose-gc (see worker.mjs); the two libraries alternate run
// by run, in ABBA order, so that drift on a noisy machine hits both. Prints
// medians and ratios (ours / stock), the goals we measure against, a Markdown table
// for the README, and writes benchmark/results.json.
import { execFileSync, fork } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { MongoClient } from 'mongodb'
import { startFerretDB, testServer } from '../__test__/support/ferretdb.mjs'
import { startPostgres } from '../__test__/support/postgres.mjs'
import { LABELS, LIBRARIES } from './libraries.mjs'
import { evaluateTargets, markdownTable, scenarioTitle, summarize, targetLines, textTable } from './report.mjs'
import { primitivesTable } from './primitives.mjs'
import { startWireCounter } from './wire.mjs'

const here = path.dirname(fileURLToPath(import.meta.url))
const STOCK_REFRESH_MS = 10_000 // mongo-locks 3.2: fixed, not configurable

/** Both modes; the holding window is two of our refresh intervals. */
function modeConfig(quick) {
  const oursHoldingOptions = quick ? { ttlMs: 3000, refreshMs: 500 } : { ttlMs: 60_000, refreshMs: 10_000 }
  const intervalMs = oursHoldingOptions.refreshMs
  return {
    mode: quick ? 'quick' : 'full',
    runs: quick ? 1 : 3,
    oursHoldingOptions,
    scenarios: {
      uncontended: { iterations: quick ? 100 : 1000 },
      throughput: { loops: 64, durationMs: quick ? 1000 : 10_000 },
      contention: { waiters: 32, rounds: quick ? 1 : 3, holdMs: 1, waitMs: 30_000 },
      holding: {
        locks: quick ? [300] : [1000, 10_000],
        concurrency: 32,
        windowMs: 2 * intervalMs,
        intervalMs,
        stockIntervalMs: STOCK_REFRESH_MS,
      },
      eventLoop: { ratePerSec: quick ? 200 : 1000, durationMs: quick ? 1000 : 10_000 },
      cpu: { iterations: quick ? 200 : 4000, blocks: quick ? 2 : 8 },
      burst: { locks: quick ? 500 : 10_000, settleMs: quick ? 500 : 3000 },
      // 32 waiters across 4 processes, as scenario 3's 32 in one.
      handover: { processes: 4, waitersPerProcess: 8, rounds: quick ? 1 : 10, holdMs: 1, waitMs: 30_000 },
      // Each of lock+free, a first once() run and a replay, `iterations`
      // times interleaved, then `commandCalls` of each to count commands.
      // Every first run leaves a record, and FerretDB's SQLite backend scans
      // the collection for each call: 1,000 runs took minutes there.
      once: { iterations: quick ? 50 : 300, commandCalls: quick ? 20 : 100 },
    },
    // Ours alone (stock has none of them): see primitives.mjs.
    primitives: { iterations: quick ? 50 : 500, durationMs: quick ? 1000 : 5000, electionRounds: quick ? 3 : 20 },
  }
}

/** The value of `--name V` or `--name=V`, or undefined. */
function option(argv, name) {
  const at = argv.findIndex((a) => a === name || a.startsWith(`${name}=`))
  if (at < 0) return undefined
  return argv[at].includes('=') ? argv[at].slice(name.length + 1) : argv[at + 1]
}

function positiveInteger(name, value) {
  const n = Number(value)
  if (!Number.isInteger(n) || n < 1) throw new TypeError(`${name} needs a positive integer, got ${value}`)
  return n
}

function parseArgs(argv) {
  const config = modeConfig(argv.includes('--quick'))
  const runs = option(argv, '--runs')
  if (runs !== undefined) config.runs = positiveInteger('--runs', runs)
  const locks = option(argv, '--locks')
  if (locks !== undefined) {
    config.scenarios.holding.locks = locks.split(',').map((n) => positiveInteger('--locks', n))
    config.locksGiven = true
  }
  config.postgresql = argv.includes('--postgresql')
  const burst = option(argv, '--burst')
  if (burst !== undefined) {
    config.scenarios.burst.locks = positiveInteger('--burst', burst)
    config.burstGiven = true
  }
  const only = option(argv, '--only')
  if (only !== undefined) {
    const wanted = only.split(',')
    config.only = wanted
    if (!wanted.includes('primitives')) config.primitives = null
    const unknown = wanted.filter((s) => !(s in config.scenarios) && s !== 'primitives')
    if (unknown.length) throw new TypeError(`--only: unknown scenario ${unknown.join(', ')} (known: ${Object.keys(config.scenarios).join(', ')}, primitives)`)
    config.scenarios = Object.fromEntries(Object.entries(config.scenarios).filter(([s]) => wanted.includes(s)))
  }
  return config
}

/** Runs one measurement in a fresh process; rejects if it fails or dies. */
function measure(job) {
  return new Promise((resolve, reject) => {
    const child = fork(path.join(here, 'worker.mjs'), [], { execArgv: ['--expose-gc'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    let reply
    child.on('message', (message) => { reply = message })
    child.on('error', reject)
    child.on('exit', (code, signal) => {
      if (reply?.result) return resolve(reply.result)
      reject(new Error(`${job.scenario} / ${job.library} run ${job.run} failed (exit ${code ?? signal}):\n${reply?.error ?? 'no reply'}`))
    })
    child.send(job)
  })
}

/** The primitives' rows, measured in a fresh process (see primitives.mjs). */
function measurePrimitivesInChild(url, config) {
  console.log('  primitives: mutex, semaphore, read/write lock, election (ours alone)')
  const out = execFileSync(process.execPath, [path.join(here, 'primitives.mjs'), url, JSON.stringify(config)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] })
  return JSON.parse(out.trim().split('\n').pop()).rows
}

/** What the server is, for the results (version from buildInfo). */
async function describeServer(server) {
  const client = await MongoClient.connect(server.url)
  try {
    const info = await client.db('admin').command({ buildInfo: 1 })
    const product = info.ferretdbVersion ? `FerretDB ${info.ferretdbVersion}` : `MongoDB ${info.version}`
    const backend = server.external ? null : server.backend
    const where = server.external ? 'MONGO_URL' : `local, started for this run, ${backend === 'postgresql' ? 'PostgreSQL' : 'SQLite'} backend`
    return { description: `${product} (${where})`, version: info.version, ferretdbVersion: info.ferretdbVersion ?? null, backend }
  } finally {
    await client.close()
  }
}

/**
 * FerretDB 1.24 on SQLite finds a document by _id for an update or a delete
 * by scanning the collection (about 3 µs per document here), so with
 * thousands of locks held every refresh and free costs tens of ms.
 */
function slowHoldWarning(config, serverInfo) {
  // Full mode on FerretDB: 1,000 pairs/s is beyond what it serves (about 600
  // pairs/s at best, far less with thousands in flight): at that offered load
  // both libraries saturate and the ELU says nothing. Offer 250 pairs/s.
  const sqlite = serverInfo.backend === 'sqlite'
  if (sqlite && config.mode === 'full' && config.scenarios.eventLoop) {
    config.scenarios.eventLoop.ratePerSec = 250
    config.ferretdbNotes = ['scenario 5 offers 250 pairs/s, not 1,000: FerretDB (SQLite backend) serves at most ~600 pairs/s, and at 1,000 offered both libraries saturate (runs of 100+ s), which makes event-loop utilization meaningless']
  }
  // Full mode on FerretDB: 10,000 frees by _id over 10,000 documents take minutes.
  if (sqlite && config.mode === 'full' && !config.burstGiven && config.scenarios.burst) {
    config.scenarios.burst.locks = 3000
    config.ferretdbNotes = [...(config.ferretdbNotes ?? []), 'scenario 7 bursts 3,000 concurrent acquisitions, not 10,000 (FerretDB on SQLite scans by _id; --burst 10000 forces it)']
  }
  // Full mode on FerretDB's SQLite backend: 10,000 held locks would take many
  // minutes per run (stock's frees alone); hold 1,000 unless told.
  if (sqlite && config.mode === 'full' && !config.locksGiven && config.scenarios.holding) {
    config.scenarios.holding.locks = [1000]
    return 'scenario 4 holds 1,000 locks, not also 10,000: FerretDB 1.24 (SQLite backend) finds documents by scanning the collection, ' +
      'so updates and frees slow with the number held (stock frees 2,500 locks in about 450 s). ' +
      'Use --postgresql (FerretDB on PostgreSQL), MONGO_URL with a real MongoDB, or --locks 1000,10000, for both counts'
  }
  const locks = Math.max(0, ...(config.scenarios.holding?.locks ?? []))
  if (!sqlite || locks <= 2000) return null
  return `holding ${locks} locks on FerretDB (SQLite backend), whose updates and deletes by _id scan the collection: ` +
    'refreshes and frees slow down with the number held, and scenario 4 takes minutes per run (--locks N lowers it; MONGO_URL uses a real MongoDB)'
}

/**
 * What one run measures: every scenario once, and scenario 4 once per number
 * of held locks, keyed `holding:<locks>` (see report.mjs).
 */
function measurements(config) {
  return Object.entries(config.scenarios).flatMap(([scenario, settings]) =>
    scenario === 'holding'
      ? settings.locks.map((locks) => ({ key: `holding:${locks}`, scenario, settings: { ...settings, locks } }))
      : [{ key: scenario, scenario, settings }])
}

/**
 * A byte-counting relay of its own for one measurement of scenario 4, on the
 * local server only (a MONGO_URL may be a replica set, whose members the
 * drivers reach directly): the job's URL and where to read its counts.
 */
async function wireFor(server) {
  if (server.external) return null
  const relay = await startWireCounter(server.port)
  return { url: server.url.replace(`:${server.port}/`, `:${relay.port}/`), countsUrl: relay.countsUrl, close: relay.close }
}

/** run → scenario → both libraries, the order flipping every run (ABBA…). */
async function runAll(config, server) {
  const plan = measurements(config)
  const runs = Object.fromEntries(plan.map(({ key }) => [key, { ours: [], stock: [] }]))
  const notes = new Set()
  for (let run = 1; run <= config.runs; run++) {
    const order = run % 2 ? LIBRARIES : [...LIBRARIES].reverse()
    for (const { key, scenario, settings } of plan) {
      for (const library of order) {
        const started = Date.now()
        const wire = scenario === 'holding' ? await wireFor(server) : null
        // metricsUrl: the FerretDB started here counts commands for scenario 8 (none with MONGO_URL).
        const job = { scenario, settings, library, run, url: wire?.url ?? server.url, wire: wire && { countsUrl: wire.countsUrl }, metricsUrl: server.metricsUrl, config }
        const result = await measure(job).finally(() => wire?.close())
        const title = scenarioTitle(key)
        console.log(`  run ${run}/${config.runs}  ${title.padEnd(34)} ${LABELS[library].padEnd(20)} ${((Date.now() - started) / 1000).toFixed(1)} s`)
        runs[key][library].push(result)
        for (const note of result.notes) notes.add(`${title}, ${LABELS[library]}: ${note}`)
        if (result.libraryNotes.includes('ttlDropped')) {
          notes.add(`${LABELS.stock}: this server refuses TTL indexes, so the TTL index spec was left out of its createIndexes (__test__/support/stock-mongo-locks.mjs); its lock path is stock`)
        }
      }
    }
  }
  return { runs, notes: [...notes] }
}

/**
 * MONGO_URL, or a local FerretDB on SQLite, or (`--postgresql`) on a
 * throwaway PostgreSQL; `backend` says which for a local one.
 */
async function startServer(config) {
  if (!config.postgresql || process.env.MONGO_URL) return { ...(await testServer()), backend: 'sqlite' }
  const postgres = await startPostgres()
  try {
    const ferretdb = await startFerretDB({ postgresql: postgres.url })
    return { ...ferretdb, backend: 'postgresql', stop: async () => { await ferretdb.stop(); await postgres.stop() } }
  } catch (error) {
    await postgres.stop()
    throw error
  }
}

async function main() {
  const config = parseArgs(process.argv.slice(2))
  const server = await startServer(config)
  const stop = async () => { await server.stop().catch(() => {}) }
  for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, async () => { await stop(); process.exit(130) })
  let serverInfo, runs, notes, slowHold, primitives
  try {
    serverInfo = await describeServer(server)
    console.log(`Benchmark (${config.mode} mode, ${config.runs} run${config.runs > 1 ? 's' : ''} per scenario and library) on ${serverInfo.description}`)
    slowHold = slowHoldWarning(config, serverInfo)
    if (slowHold) console.log(`Warning: ${slowHold}`)
    ;({ runs, notes } = await runAll(config, server))
    if (config.primitives) primitives = measurePrimitivesInChild(server.url, config.primitives)
  } finally {
    await stop()
  }

  if (slowHold) notes.unshift(slowHold)
  if (config.ferretdbNotes) notes.unshift(...config.ferretdbNotes)
  if (config.mode === 'quick') {
    notes.unshift('quick mode: small counts and one run, a smoke check only; stock refreshes every 10 s, longer than the quick hold, so its refresh figures are n/a (only sampled)')
  }
  const summary = summarize(runs)
  const targets = evaluateTargets(summary, config)
  const machine = { cpu: os.cpus()[0]?.model ?? 'unknown', cores: os.cpus().length, node: process.version, platform: `${os.platform()} ${os.arch()}` }
  const results = { date: new Date().toISOString(), mode: config.mode, runs: config.runs, machine, server: serverInfo, config, notes, scenarios: summary, targets, primitives }
  // The quick smoke run (CI) must not overwrite the full results the README quotes.
  // Nor a partial run (--only) the whole run's file.
  const resultsFile = path.join(here, config.mode === 'quick' ? 'results-quick.json' : config.only ? `results-${config.only.join('-')}.json` : 'results.json')
  writeFileSync(resultsFile, JSON.stringify(results, null, 2) + '\n')

  const header = `${machine.cpu}, ${machine.cores} cores, Node ${machine.node}; ${serverInfo.description}; medians of ${config.runs} run${config.runs > 1 ? 's' : ''} (${config.mode} mode)`
  console.log(`\n${header}\n\n${textTable(summary)}\n`)
  console.log(`Targets (ours / stock unless said otherwise):\n${targetLines(targets)}\n`)
  if (notes.length) console.log(`Notes:\n${notes.map((n) => `  - ${n}`).join('\n')}\n`)
  console.log(`Markdown (for the README):\n\n${header}\n\n${markdownTable(summary)}\n`)
  if (primitives) console.log(`Primitives (ours alone: stock mongo-locks has none), one run:\n\n${primitivesTable(primitives)}\n`)
  console.log(`Results written to ${path.relative(process.cwd(), resultsFile)}`)
}

main().then(
  () => process.exit(0),
  (error) => { console.error(error); process.exit(1) },
)
