// Native memory per held lock and after a burst, counted by the addon's own
// allocator. Needs a build with the `alloc-stats` feature, which
// adds a counting global allocator and hidden __allocStats() / __mallocTrim():
//
//   nice -n 10 cargo build --release --target x86_64-unknown-linux-gnu --features alloc-stats
//   cp target/x86_64-unknown-linux-gnu/release/libmongo_locks_native.so tmp/alloc-stats.node
//   NAPI_RS_NATIVE_LIBRARY_PATH=$PWD/tmp/alloc-stats.node MONGO_URL=mongodb://127.0.0.1:27017/ \
//     node --expose-gc benchmark/native-memory.mjs holding 10000
//   ... node --expose-gc benchmark/native-memory.mjs burst 10000 [--trim]
//
// holding N: after a warm-up, holds N/2 locks, then N; the slope over the
// second half is the cost of one more held lock, in Rust bytes and blocks
// (exact), RSS, V8 heap and `external`. `--signal` reads `lock.signal` of
// each lock, `--on-lost` passes `onLost` (the JS-side extras a lock can have).
// burst N: N concurrent lock() calls on fresh keys, all freed; RSS, Rust
// live bytes and glibc's mallinfo2 before, at the peak and after; with
// `--trim`, also after a malloc_trim(0) from JS (the experiment); with
// `--gc-early`, a full GC right after the frees.
import { MongoClient } from 'mongodb'
import { createRequire } from 'node:module'
import { setTimeout as sleep } from 'node:timers/promises'

const require = createRequire(import.meta.url)
const [mode = 'holding', countArg = '2000', ...flags] = process.argv.slice(2)
const N = Number(countArg)
const url = process.env.MONGO_URL
if (!url) throw new Error('set MONGO_URL (a FerretDB or MongoDB)')
if (!process.env.NAPI_RS_NATIVE_LIBRARY_PATH) throw new Error('set NAPI_RS_NATIVE_LIBRARY_PATH to an alloc-stats build')
if (!globalThis.gc) throw new Error('run with --expose-gc')

const { LockManager } = require('../index.js')
const raw = require(process.env.NAPI_RS_NATIVE_LIBRARY_PATH)
if (typeof raw.__allocStats !== 'function') throw new Error('this build has no __allocStats: build with --features alloc-stats')

const sample = async () => {
  for (let i = 0; i < 3; i++) {
    gc()
    await sleep(50)
  }
  const m = process.memoryUsage()
  return { ...raw.__allocStats(), rss: m.rss, heapUsed: m.heapUsed, external: m.external }
}
const delta = (a, b, per = 1) => Object.fromEntries(Object.keys(b).map((k) => [k, b[k] == null ? null : (b[k] - a[k]) / per]))
const mb = (o) => Object.fromEntries(Object.entries(o).map(([k, v]) => [k, v == null ? null : +(v / 1048576).toFixed(2)]))

async function pool(count, concurrency, fn) {
  let next = 0
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, async () => {
    while (next < count) await fn(next++)
  }))
}

const client = await MongoClient.connect(url)
const collection = client.db('mongo-locks-native-bench').collection(`native-memory-${mode}-${process.pid}-${Date.now()}`)
// A burst of thousands queues for the pool: a longer operation timeout lets
// it finish instead of timing out in the queue (failures are counted anyway).
const locker = new LockManager(collection, { logger: false, operationTimeoutMs: 60_000 })
let key = 0
const fresh = (p) => `${p}-${process.pid}-${key++}`
const options = {}
if (flags.includes('--on-lost')) options.onLost = () => {}
const started = Date.now()
try {
  await locker.ping()
  // Warm-up: the pool's connections, the driver's buffers, the maps grown.
  await pool(256, 32, async () => (await locker.lock(fresh('warm'))).free())

  if (mode === 'holding') {
    const held = []
    const take = (count) => pool(count, 32, async () => {
      const lock = await locker.lock(fresh('hold'), options)
      if (!lock) throw new Error('fresh key held')
      if (flags.includes('--signal')) void lock.signal
      held.push(lock)
    })
    const base = await sample()
    await take(Math.floor(N / 2))
    const half = await sample()
    await take(N - Math.floor(N / 2))
    const full = await sample()
    const second = N - Math.floor(N / 2)
    await pool(held.length, 32, (i) => held[i].free())
    held.length = 0
    const freed = await sample()
    console.log(JSON.stringify({
      mode, locks: N, flags, sizes: raw.__lockSizes(),
      slopePerLock: delta(half, full, second),
      firstHalfPerLock: delta(base, half, Math.floor(N / 2)),
      afterFreeVsBase: delta(base, freed),
      base, half, full, freed, seconds: (Date.now() - started) / 1000,
    }, null, 1))
  } else if (mode === 'burst') {
    const before = await sample()
    const t0 = Date.now()
    let failed = 0
    const settle = (results) => results.filter((r) => r.status === 'fulfilled' || (failed++, false)).map((r) => r.value)
    const held = settle(await Promise.allSettled(Array.from({ length: N }, () => locker.lock(fresh('burst'))))).filter(Boolean)
    const peakNow = process.memoryUsage().rss
    settle(await Promise.allSettled(held.map((lock) => lock.free())))
    const burstMs = Date.now() - t0
    const taken = held.length
    held.length = 0
    // `--gc-early`: collect the burst's lock objects at once, before the
    // core's trim (1 s after the last call), instead of only at the sample.
    if (flags.includes('--gc-early')) gc()
    await sleep(2000)
    const after = await sample()
    const out = {
      mode, locks: N, taken, failed, flags, burstMs, peakRssMB: +((peakNow - before.rss) / 1048576).toFixed(2),
      afterMinusBeforeMB: mb(delta(before, after)),
      before, after,
    }
    if (flags.includes('--trim')) {
      const released = raw.__mallocTrim()
      const trimmed = await sample()
      Object.assign(out, { trimReleased: released, trimmedMinusBeforeMB: mb(delta(before, trimmed)), trimmed })
    }
    console.log(JSON.stringify(out, null, 1))
  }
} finally {
  await locker.close()
  await collection.drop().catch(() => {})
  await client.close()
}
