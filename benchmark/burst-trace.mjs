// After a burst of 10,000 concurrent lock() calls and their frees: where the
// process's memory stands every 250 ms after a full GC, on the Rust side
// (live bytes and blocks, trims done), in glibc (bytes in use, free kept,
// arena, mmapped) and in V8 (heapTotal, heapUsed, external). It shows when
// the lock objects are finalized and the trim runs (src/trim.rs), and what
// RSS keeps after that (benchmark/README.md, memory after a burst). Needs an alloc-stats
// build (see native-memory.mjs for how to make one):
//
//   NAPI_RS_NATIVE_LIBRARY_PATH=$PWD/tmp/alloc-stats.node MONGO_URL=mongodb://127.0.0.1:27017/ \
//     node --expose-gc benchmark/burst-trace.mjs
import { MongoClient } from 'mongodb'
import { createRequire } from 'node:module'
import { setTimeout as sleep } from 'node:timers/promises'
const require = createRequire(import.meta.url)
const { LockManager } = require('../index.js')
if (!process.env.NAPI_RS_NATIVE_LIBRARY_PATH || !process.env.MONGO_URL || !globalThis.gc) throw new Error('see the top of this file for how to run it')
const raw = require(process.env.NAPI_RS_NATIVE_LIBRARY_PATH)
if (typeof raw.__allocStats !== 'function') throw new Error('this build has no __allocStats: build with --features alloc-stats')
const client = await MongoClient.connect(process.env.MONGO_URL)
const coll = client.db('mongo-locks-native-bench').collection(`burst-trace-${process.pid}`)
const locker = new LockManager(coll, { logger: false, operationTimeoutMs: 60000 })
await locker.ping()
const st = (label) => { const a = raw.__allocStats(); const m = process.memoryUsage(); console.log(label.padEnd(10), 'rust', (a.liveBytes/1e6).toFixed(1), 'blocks', a.liveBlocks, 'trims', a.trims, 'freeKept', (a.mallocFreeKept/1e6).toFixed(1), 'rss', (m.rss/1e6).toFixed(1), 'heapTotal', (m.heapTotal/1e6).toFixed(1), 'heapUsed', (m.heapUsed/1e6).toFixed(1), 'ext', (m.external/1e6).toFixed(1), 'inUse', (a.mallocInUse/1e6).toFixed(1), 'mmapped', (a.mallocMmapped/1e6).toFixed(1), 'arena', (a.mallocArena/1e6).toFixed(1)) }
gc(); st('before')
let held = await Promise.all(Array.from({ length: 10000 }, (_, i) => locker.lock('b' + i)))
st('peak')
await Promise.all(held.map((l) => l.free()))
held = null
st('freed')
await sleep(500)
gc(); st('gc')
for (let i = 1; i <= 6; i++) { await sleep(250); st('+' + i * 250 + 'ms') }
await locker.close(); await coll.drop().catch(() => {}); await client.close()
