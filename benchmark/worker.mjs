// One measurement in a process of its own (forked by bench.mjs with
// --expose-gc): one scenario, one library, one run. A fresh process per
// measurement keeps one library's leftovers out of the other's numbers
// (mongo-locks leaves a 10 s timer behind per lock it ever took; heap and
// RSS baselines start clean) and lets gc() exist for the memory figures.
import { openLibrary } from './libraries.mjs'
import { SCENARIOS, warmUp } from './scenarios.mjs'

/**
 * mongo-locks reports each failed refresh with its own console.error line;
 * with thousands of locks on a loaded server that buries the report. Count
 * them instead, and say how many there were.
 */
function countStockRefreshFailures() {
  const counter = { count: 0 }
  const original = console.error
  console.error = (...args) => {
    if (args[0] === 'Failed to refresh lock') counter.count++
    else original(...args)
  }
  return counter
}

async function measure({ scenario, settings, library, run, url, wire, metricsUrl, config }) {
  const refreshFailures = library === 'stock' ? countStockRefreshFailures() : null
  const collectionName = `${scenario}-${library}-run${run}-${process.pid}-${Date.now()}`
  const lib = await openLibrary(library, {
    url,
    collectionName,
    oursOptions: scenario === 'holding' ? config.oursHoldingOptions : undefined,
    monitorCommands: scenario === 'holding',
  })
  try {
    await warmUp(lib)
    // The context is for scenario 8, whose participant processes open the
    // library on this same collection (this process drops it at the end).
    const result = await SCENARIOS[scenario](lib, settings, { library, url, metricsUrl, collectionName, wire })
    const stats = lib.stats()
    if (stats && (stats.lost || stats.errors)) {
      result.notes.push(`stats() reports lost: ${stats.lost}, errors: ${stats.errors}`)
    }
    if (refreshFailures?.count) result.notes.push(`logged "Failed to refresh lock" ${refreshFailures.count} times`)
    return { ...result, libraryNotes: lib.notes, stats }
  } finally {
    await lib.close()
  }
}

process.once('message', async (job) => {
  let reply
  try {
    reply = { result: await measure(job) }
  } catch (error) {
    reply = { error: error?.stack ?? String(error) }
  }
  // Exit explicitly: stock mongo-locks' per-lock timers would keep this
  // process alive for another 10 s.
  process.send(reply, () => process.exit(reply.error ? 1 : 0))
})
