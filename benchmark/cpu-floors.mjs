// Process CPU per sequential pair, four ways in one process, in alternating
// blocks so that drift on a busy machine hits all four alike:
//
//   ours        lock(freshKey) + free() of this library
//   nodeWrites  insertOne + deleteOne of the Node driver on the same server
//   nodePings   two { ping: 1 } commands of the Node driver
//   oursPings   two locker.ping() (scenario 6's floor for this library)
//
// It answers what a CPU goal of ours asks of a client that makes two
// round trips: mongo-locks is the Node driver's insert and delete plus its
// own JavaScript, so half of its CPU can be below what the Node driver's
// two writes, or even its two pings, cost (benchmark/README.md). Starts a
// throwaway FerretDB unless MONGO_URL is set:
//
//   node benchmark/cpu-floors.mjs [pairs = 3000]
import { MongoClient, ObjectId } from 'mongodb'
import { createRequire } from 'node:module'
import { testServer } from '../__test__/support/ferretdb.mjs'

const require = createRequire(import.meta.url)
const { LockManager } = require('../index.js')

const pairs = Number(process.argv[2] ?? 3000)
if (!Number.isInteger(pairs) || pairs < 4) throw new TypeError(`pairs: expected an integer of at least 4, got ${process.argv[2]}`)
const BLOCKS = 4

const server = await testServer()
const client = await MongoClient.connect(server.url)
const db = client.db('mongo-locks-native-bench')
const coll = db.collection(`cpu-floors-${process.pid}`)
const locker = new LockManager(coll, { logger: false })
try {
  const ways = {
    ours: async (key) => {
      const lock = await locker.lock(key)
      if (!lock) throw new Error(`lock(${key}) on a fresh key returned null`)
      await lock.free()
    },
    nodeWrites: async (key) => {
      const _id = new ObjectId()
      await coll.insertOne({ _id, action: `node ${key}`, expiresAt: new Date() })
      await coll.deleteOne({ _id })
    },
    nodePings: async () => {
      await db.command({ ping: 1 })
      await db.command({ ping: 1 })
    },
    oursPings: async () => {
      await locker.ping()
      await locker.ping()
    },
  }
  for (const way of Object.values(ways)) for (let i = 0; i < 200; i++) await way(`warm-${i}`)
  const cpu = Object.fromEntries(Object.keys(ways).map((name) => [name, 0]))
  const per = Math.floor(pairs / BLOCKS)
  for (let block = 0; block < BLOCKS; block++) {
    for (const [name, way] of Object.entries(ways)) {
      const start = process.cpuUsage()
      for (let i = 0; i < per; i++) await way(`${block}-${i}`)
      const used = process.cpuUsage(start)
      cpu[name] += used.user + used.system
    }
  }
  const us = Object.fromEntries(Object.entries(cpu).map(([name, total]) => [name, total / (per * BLOCKS)]))
  console.log(`Node ${process.version}, ${per * BLOCKS} pairs each; process CPU per pair (µs):`)
  for (const [name, value] of Object.entries(us)) console.log(`  ${name.padEnd(11)} ${value.toFixed(0)}`)
  console.log(`  ours / nodeWrites ${(us.ours / us.nodeWrites).toFixed(2)}×; ours / oursPings ${(us.ours / us.oursPings).toFixed(2)}×; nodeWrites / nodePings ${(us.nodeWrites / us.nodePings).toFixed(2)}×`)
} finally {
  await locker.close()
  await coll.drop().catch(() => {})
  await client.close()
  await server.stop()
}
