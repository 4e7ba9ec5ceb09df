// `npm run bench [-- --quick] [-- --runs N]`: mongo-locks-native against
// stock mongo-locks 3.2 (on the Node mongodb driver), same server, same run.
// Also: `--locks N` (locks held in scenario 4), `--only holding,eventLoop`
// (a subset of: uncontended, throughput, contention, holding, eventLoop, cpu, burst,
// handover). Scenario 8 (handover) forks its own participant processes.
// `--burst N` sets the number of concurrent acquisitions of scenario 7.
// The server is MONGO_URL when set, else a throwaway local FerretDB.
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
import { testServer } from '../scripts/ferretdb.mjs'
import { LABELS, LIBRARIES } from './libraries.mjs'
import { evaluateTargets, markdownTable, SCENARIO_TITLES, summarize, targetLines, textTable } from './report.mjs'
import { primitivesTable } from './primitives.mjs'

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
        locks: quick ? 300 : 10_000,
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
    config.scenarios.holding.locks = positiveInteger('--locks', locks)
    config.locksGiven = true
  }
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
    const where = server.external ? 'MONGO_URL' : 'local, started for this run, SQLite backend'
    return { description: `${product} (${where})`, version: info.version, ferretdbVersion: info.ferretdbVersion ?? null }
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
  if (serverInfo.ferretdbVersion && config.mode === 'full' && config.scenarios.eventLoop) {
    config.scenarios.eventLoop.ratePerSec = 250
    config.ferretdbNotes = ['scenario 5 offers 250 pairs/s, not 1,000: FerretDB (SQLite backend) serves at most ~600 pairs/s, and at 1,000 offered both libraries saturate (runs of 100+ s), which makes event-loop utilization meaningless']
  }
  // Full mode on FerretDB: 10,000 frees by _id over 10,000 documents take minutes.
  if (serverInfo.ferretdbVersion && config.mode === 'full' && !config.burstGiven && config.scenarios.burst) {
    config.scenarios.burst.locks = 3000
    config.ferretdbNotes = [...(config.ferretdbNotes ?? []), 'scenario 7 bursts 3,000 concurrent acquisitions, not 10,000 (FerretDB on SQLite scans by _id; --burst 10000 forces it)']
  }
  // Full mode on FerretDB: 10,000 held locks would take many minutes per run
  // (and, with the 60 s ttl, outrun our own refresh); hold 1,000 unless told.
  if (serverInfo.ferretdbVersion && config.mode === 'full' && !config.locksGiven && config.scenarios.holding) {
    config.scenarios.holding.locks = 1000
    return 'scenario 4 holds 1,000 locks, not 10,000: FerretDB 1.24 (SQLite backend) finds documents by _id by scanning the collection, ' +
      'so updates and frees slow with the number held (an updateMany of 1,000 ids over 10,000 documents took ~17 s). ' +
      'Use MONGO_URL with a real MongoDB, or --locks 10000, for the full count'
  }
  const locks = config.scenarios.holding?.locks ?? 0
  if (!serverInfo.ferretdbVersion || locks <= 2000) return null
  return `holding ${locks} locks on FerretDB (SQLite backend), whose updates and deletes by _id scan the collection: ` +
    'refreshes and frees slow down with the number held, and scenario 4 takes minutes per run (--locks N lowers it; MONGO_URL uses a real MongoDB)'
}

/** run → scenario → both libraries, the order flipping every run (ABBA…). */
async function runAll(config, server) {
  const runs = Object.fromEntries(Object.keys(config.scenarios).map((s) => [s, { ours: [], stock: [] }]))
  const notes = new Set()
  for (let run = 1; run <= config.runs; run++) {
    const order = run % 2 ? LIBRARIES : [...LIBRARIES].reverse()
    for (const scenario of Object.keys(config.scenarios)) {
      for (const library of order) {
        const started = Date.now()
        // metricsUrl: the FerretDB started here counts commands for scenario 8 (none with MONGO_URL).
        const result = await measure({ scenario, library, run, url: server.url, metricsUrl: server.metricsUrl, config })
        console.log(`  run ${run}/${config.runs}  ${SCENARIO_TITLES[scenario].padEnd(26)} ${LABELS[library].padEnd(20)} ${((Date.now() - started) / 1000).toFixed(1)} s`)
        runs[scenario][library].push(result)
        for (const note of result.notes) notes.add(`${SCENARIO_TITLES[scenario]}, ${LABELS[library]}: ${note}`)
        if (result.libraryNotes.includes('ttlDropped')) {
          notes.add(`${LABELS.stock}: this server refuses TTL indexes, so the TTL index spec was left out of its createIndexes (scripts/stock-mongo-locks.mjs); its lock path is stock`)
        }
      }
    }
  }
  return { runs, notes: [...notes] }
}

async function main() {
  const config = parseArgs(process.argv.slice(2))
  const server = await testServer()
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
