// One demo worker: a process of its own, like one instance of a backend.
// It takes each of a few keys several times, holds it briefly, and reports
// each critical section as a JSON line: { worker, key, start, end }.
import { MongoClient } from 'mongodb'
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
const { LockManager } = require('../index.js')
const [worker, collection, rounds] = process.argv.slice(2)
const keys = ['bank-details-42', 'payment-7', 'report-nightly']
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

const client = await MongoClient.connect(process.env.MONGO_URL)
const locker = new LockManager(client.db('mongo-locks-native-demo').collection(collection))
try {
  for (let round = 0; round < Number(rounds); round++) {
    for (const key of keys) {
      // The retry-with-backoff pattern of the EPR LAPS Backend's locking guide
      // (its "Pattern 3"), until we hold the key.
      for (let attempt = 0; ; attempt++) {
        const lock = await locker.lock(key)
        if (lock) {
          try {
            const start = Date.now()
            await sleep(20 + Math.random() * 40) // the critical section
            console.log(JSON.stringify({ worker, key, start, end: Date.now(), attempts: attempt + 1 }))
          } finally {
            await lock.free()
          }
          break
        }
        await sleep(Math.min(5 * 2 ** attempt, 100) * (0.5 + Math.random()))
      }
    }
  }
} finally {
  await locker.close()
  await client.close()
}
