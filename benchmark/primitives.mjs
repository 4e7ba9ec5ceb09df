// The primitives' benchmark rows (`npm run bench`): for the mutex and each
// primitive built on it, the latency of an uncontended acquire + free, and
// hand-overs per second when several callers contend for it. Stock
// mongo-locks has no semaphore, read/write lock or election, so these rows
// are ours alone; the mutex row is the yardstick. Runs in a process of its
// own: `node benchmark/primitives.mjs <url> <json config>` prints one JSON line.
import { createRequire } from 'node:module'
import { MongoClient } from 'mongodb'
import { percentile } from './stats.mjs'

const require = createRequire(import.meta.url)
const { LockManager } = require('../index.js')

/** Measures every row against the server at `url`; `config`: { iterations, durationMs, electionRounds }. */
export async function measurePrimitives(url, config) {
  const client = await MongoClient.connect(url)
  const db = client.db('mongo-locks-native-bench')
  const collection = db.collection(`primitives-${process.pid}-${Date.now()}`)
  const options = { logger: false, ttlMs: 10_000, refreshMs: 3000 }
  const locker = new LockManager(collection, options)
  const other = new LockManager(collection, options) // a second "instance" for the contended rows
  await locker.ready
  await other.ready

  /** Median and p99 (ms) of `iterations` sequential acquire + free. */
  async function latency(acquire, iterations) {
    const times = []
    for (let i = 0; i < iterations; i++) {
      const started = process.hrtime.bigint()
      const lock = await acquire()
      if (!lock) throw new Error('uncontended acquire returned null')
      await lock.free()
      times.push(Number(process.hrtime.bigint() - started) / 1e6)
    }
    times.sort((a, b) => a - b)
    return { medianMs: percentile(times, 50), p99Ms: percentile(times, 99) }
  }

  /**
   * Hand-overs per second: `callers` loops (half on each manager) acquire with
   * waitMs, hold `holdMs`, free, for `durationMs`.
   */
  async function handOvers(makeAcquire, callers, durationMs, holdMs = 1) {
    let count = 0
    const end = Date.now() + durationMs
    const loop = async (acquire) => {
      while (Date.now() < end) {
        const lock = await acquire()
        if (!lock) continue
        count++
        await new Promise((r) => setTimeout(r, holdMs))
        await lock.free()
      }
    }
    const started = Date.now()
    await Promise.all(Array.from({ length: callers }, (_, i) => loop(makeAcquire(i % 2 ? other : locker))))
    return { perSec: (count * 1000) / (Date.now() - started), callers }
  }

  /** Election hand-over: the leader stops; how long until the next one is elected. */
  async function electionHandOver(rounds) {
    const times = []
    for (let i = 0; i < rounds; i++) {
      let resolveElected
      const elected = []
      const campaign = (manager, name) => manager.elect(`leader-${i}`, {
        onElected: () => { elected.push({ name, at: process.hrtime.bigint() }); resolveElected?.() },
      })
      const a = campaign(locker, 'a')
      while (!a.isLeader) await new Promise((r) => setTimeout(r, 1))
      const b = campaign(other, 'b')
      await new Promise((r) => setTimeout(r, 20))
      const next = new Promise((r) => { resolveElected = r })
      const stopped = process.hrtime.bigint()
      await a.stop()
      await next
      times.push(Number(elected[elected.length - 1].at - stopped) / 1e6)
      await b.stop()
    }
    times.sort((x, y) => x - y)
    return { medianMs: percentile(times, 50), p99Ms: percentile(times, 99) }
  }

  const n = config.iterations
  const d = config.durationMs
  const waitMs = 30_000
  const rw = (m) => m.readWriteLock('rw')
  // Warm-up: connections, the server's first use of the collection.
  await latency(() => locker.lock('warm-up'), 20)
  const rows = []
  rows.push({
    primitive: 'mutex: lock()',
    ...(await latency(() => locker.lock('mutex'), n)),
    handOvers: await handOvers((m) => () => m.lock('mutex-c', { waitMs }), 8, d),
  })
  rows.push({
    primitive: 'semaphore, limit 4: acquire()',
    ...(await latency(() => locker.semaphore('sem', { limit: 4 }).acquire(), n)),
    handOvers: await handOvers((m) => () => m.semaphore('sem-c', { limit: 4 }).acquire({ waitMs }), 16, d),
  })
  rows.push({
    primitive: 'read/write lock: read()',
    ...(await latency(() => rw(locker).read(), n)),
    handOvers: await handOvers((m) => () => rw(m).read({ waitMs }), 8, d),
  })
  rows.push({
    primitive: 'read/write lock: write()',
    ...(await latency(() => rw(locker).write(), n)),
    handOvers: await handOvers((m) => () => rw(m).write({ waitMs }), 8, d),
  })
  rows.push({
    primitive: 'read/write lock: 80% read(), 20% write()',
    handOvers: await handOvers((m) => () => (Math.random() < 0.8 ? rw(m).read({ waitMs }) : rw(m).write({ waitMs })), 8, d),
  })
  rows.push({ primitive: 'election: stop() → next leader', ...(await electionHandOver(config.electionRounds)) })

  await locker.close()
  await other.close()
  await collection.drop().catch(() => {})
  await client.close()
  return rows
}

/** The rows as a Markdown table, for the README. */
export function primitivesTable(rows) {
  const f = (v, digits = 1) => (v === undefined || v === null ? '—' : v.toFixed(digits))
  const lines = [
    '| primitive | acquire + free, median ms | p99 ms | hand-overs/s under contention |',
    '|---|---:|---:|---:|',
    ...rows.map((r) => `| ${r.primitive} | ${f(r.medianMs)} | ${f(r.p99Ms)} | ${r.handOvers ? `${f(r.handOvers.perSec, 0)} (${r.handOvers.callers} callers, 2 managers)` : '—'} |`),
  ]
  return lines.join('\n')
}

// `node benchmark/primitives.mjs <url> <json config>`: one JSON line.
if (import.meta.url === `file://${process.argv[1]}`) {
  const [url, json] = process.argv.slice(2)
  console.log(JSON.stringify({ rows: await measurePrimitives(url, JSON.parse(json)) }))
}
