// One participant of scenario 8 (cross-process hand-over), forked by
// handover.mjs: opens the library on the measuring process's collection,
// warms up, says 'ready', and on 'start' runs `waiters` waiters on the one
// shared key, each taking it `rounds` times and holding it `holdMs`. Reports
// every acquisition's times on process.hrtime.bigint() (CLOCK_MONOTONIC, the
// same clock in every process of the machine, so the parent can merge the
// timelines), then closes on 'close' without dropping the collection: the
// other participants may still be using it, and the parent drops it last.
import { openLibrary } from './libraries.mjs'
import { acquireWaiting, warmUp } from './scenarios.mjs'
import { sleep } from './stats.mjs'

const KEY = 'handover'

/** The next IPC message of `type` from the parent. */
function message(type) {
  return new Promise((resolve) => {
    const listener = (m) => {
      if (m?.type !== type) return
      process.off('message', listener)
      resolve(m)
    }
    process.on('message', listener)
  })
}

async function participate({ library, url, collectionName, waiters, rounds, holdMs, waitMs }) {
  const lib = await openLibrary(library, { url, collectionName, dropOnClose: false })
  try {
    await warmUp(lib)
    // Listen before saying ready: the start may come at once.
    const start = message('start')
    process.send({ type: 'ready' })
    await start

    const acquisitions = []
    const counts = { fallbacks: 0 }
    let freeErrors = 0
    await Promise.all(Array.from({ length: waiters }, async () => {
      for (let round = 0; round < rounds; round++) {
        const lock = await acquireWaiting(lib, KEY, waitMs, counts)
        const acquiredNs = process.hrtime.bigint()
        await sleep(holdMs)
        const freeCalledNs = process.hrtime.bigint()
        // Strings: IPC is JSON, which has no BigInt.
        acquisitions.push({ pid: process.pid, acquiredNs: String(acquiredNs), freeCalledNs: String(freeCalledNs) })
        await lock.free().catch(() => { freeErrors++ })
      }
    }))

    const notes = []
    if (freeErrors) notes.push(`${freeErrors} free() calls failed`)
    const stats = lib.stats()
    if (stats && (stats.lost || stats.errors)) notes.push(`stats() reports lost: ${stats.lost}, errors: ${stats.errors}`)
    const close = message('close')
    process.send({ type: 'done', pid: process.pid, acquisitions, fallbacks: counts.fallbacks, notes })
    await close
  } finally {
    await lib.close()
  }
}

process.once('message', async (job) => {
  let failed = false
  try {
    await participate(job)
  } catch (error) {
    failed = true
    process.send({ type: 'error', error: error?.stack ?? String(error) })
  }
  // Exit explicitly: stock mongo-locks' per-lock timers would keep this
  // process alive for another 10 s.
  process.send({ type: 'exit' }, () => process.exit(failed ? 1 : 0))
})
