// The two libraries under test behind one interface, so every scenario is
// written once and runs unchanged on both:
//
//   lock(key)               one attempt: a lock with free(), or null
//   lockWaiting(key, ms)    the library's own way to wait for a key (one call)
//   ping()                  one server round trip on the library's own driver
//   once(key, fn)           ours: locker.once(key, fn); null for stock, which has no such call
//   refreshCounters()       { commands, lockRefreshes, answered, answeredSeconds } of the
//                           background refresh: update commands sent, locks they
//                           refreshed, commands answered and their round trips' sum
//   close()                 closes everything and drops the scenario's collection
//                           (unless opened with dropOnClose: false, for a process
//                           that shares the collection with others still running)
import { MongoClient } from 'mongodb'
import { createRequire } from 'node:module'
import { stockLockManager } from '../__test__/support/stock-mongo-locks.mjs'
import { sleep } from './stats.mjs'

export const DATABASE = 'mongo-locks-native-bench'
export const LIBRARIES = ['ours', 'stock']
export const LABELS = { ours: 'mongo-locks-native', stock: 'mongo-locks 3.2' }

const require = createRequire(import.meta.url)

/**
 * The addon, loaded late (only in the processes that use it). A rebuild
 * replaces the .node file in place, so a load can fail for a moment: wait
 * and try again rather than report a broken benchmark.
 */
async function loadAddon() {
  for (let attempt = 1; ; attempt++) {
    try {
      return require('../index.js')
    } catch (error) {
      if (attempt >= 3) throw error
      console.error(`[bench] loading the addon failed (${error.message}); a rebuild may be in progress, retrying in 30 s`)
      await sleep(30_000)
    }
  }
}

/**
 * Opens `library` on a fresh collection. `monitorCommands` turns on the
 * Node driver's command events (to count stock's refresh updates); it is
 * off otherwise because it slows down every command of the Node driver.
 * `dropOnClose: false` leaves the collection to whoever opened it first
 * (scenario 8: participant processes share their parent's collection).
 */
export async function openLibrary(library, { url, collectionName, oursOptions, monitorCommands = false, dropOnClose = true }) {
  const client = await MongoClient.connect(url, { monitorCommands })
  const db = client.db(DATABASE)
  const collection = db.collection(collectionName)
  const dropAndClose = async () => {
    if (dropOnClose) await collection.drop().catch(() => {})
    await client.close()
  }
  try {
    return library === 'ours'
      ? await openOurs({ collection, oursOptions, dropAndClose })
      : await openStock({ client, db, collection, dropAndClose })
  } catch (error) {
    await dropAndClose()
    throw error
  }
}

async function openOurs({ collection, oursOptions, dropAndClose }) {
  const { LockManager } = await loadAddon()
  // Quiet, as stock is: console logging is not what is measured.
  const locker = new LockManager(collection, { logger: false, ...oursOptions })
  return {
    library: 'ours',
    notes: [],
    lock: (key) => locker.lock(key),
    lockWaiting: (key, waitMs) => locker.lock(key, { waitMs }),
    ping: () => locker.ping(),
    once: (key, fn) => locker.once(key, fn),
    refreshCounters() {
      const { counters, refreshSeconds } = locker.metricsSnapshot()
      return { commands: counters.refreshCommands, lockRefreshes: counters.refreshes, answered: refreshSeconds.count, answeredSeconds: refreshSeconds.sum }
    },
    stats: () => locker.stats(),
    async close() {
      await locker.close()
      await dropAndClose()
    },
  }
}

async function openStock({ client, db, collection, dropAndClose }) {
  const { locker, ttlDropped } = await stockLockManager(db, collection)
  // Stock refreshes each lock with its own updateOne; nothing else it does
  // in these scenarios sends an `update` command.
  let updates = 0
  let answered = 0
  let answeredSeconds = 0
  client.on('commandStarted', (event) => {
    if (event.commandName === 'update') updates++
  })
  client.on('commandSucceeded', (event) => {
    if (event.commandName !== 'update') return
    answered++
    answeredSeconds += event.duration / 1000
  })
  return {
    library: 'stock',
    notes: ttlDropped ? ['ttlDropped'] : [],
    lock: (key) => locker.lock(key),
    // mongo-locks cannot wait: one attempt, and the caller's retry loop does the rest.
    lockWaiting: (key) => locker.lock(key),
    ping: () => db.command({ ping: 1 }),
    once: null,
    refreshCounters: () => ({ commands: updates, lockRefreshes: updates, answered, answeredSeconds }),
    stats: () => null,
    close: dropAndClose,
  }
}
