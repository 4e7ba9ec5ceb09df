// The scenarios, each written once against the interface of libraries.mjs.
// Each resolves to { metrics, notes }: metrics are flat numbers (null when
// not measurable), notes are short remarks for the report. Scenario 8
// (cross-process hand-over) forks processes of its own: see handover.mjs.
import { performance } from 'node:perf_hooks'
import { handover } from './handover.mjs'
import { serverCommandCounter } from '../__test__/support/command-counter.mjs'
import { percentile, pool, sleep } from './stats.mjs'
import { readWireCounts } from './wire.mjs'

const now = () => performance.now()
let keyCounter = 0
/** A key no other lock of this process has used. */
const freshKey = (prefix) => `${prefix}-${process.pid}-${keyCounter++}`

/** One lock() on a fresh key; fails loudly on null, since nobody else holds it. */
async function lockFresh(lib, prefix) {
  const lock = await lib.lock(freshKey(prefix))
  if (!lock) throw new Error(`lock() on a fresh key returned null (${lib.library})`)
  return lock
}

/** One lock() + free() on a fresh key; resolves true (for errorTally().attempt). */
async function lockAndFree(lib, prefix) {
  await (await lockFresh(lib, prefix)).free()
  return true
}

/**
 * Server errors under load, counted instead of ending the scenario: a
 * loaded FerretDB (SQLite backend) answers some writes with SQLITE_BUSY,
 * and that is worth reporting next to the numbers rather than losing them.
 */
function errorTally() {
  return {
    count: 0,
    first: null,
    /** Runs `task`; on failure counts it and resolves `undefined`. */
    async attempt(task) {
      try {
        return await task()
      } catch (error) {
        this.count++
        this.first ??= error?.message ?? String(error)
        return undefined
      }
    },
    notes(what) {
      return this.count ? [`${this.count} ${what} failed (first: ${this.first.slice(0, 200)})`] : []
    },
  }
}

/**
 * Connects and warms both the driver and the server before measuring: the
 * first lock() waits for the indexes, and pools open connections lazily.
 */
export async function warmUp(lib) {
  await lib.ping()
  await pool(32, 8, () => lockAndFree(lib, 'warm'))
}

/** 1. One client: lock(freshKey) + free(), and the two-ping floor, interleaved. */
export async function uncontended(lib, { iterations }) {
  const pairs = []
  const floors = []
  for (let i = 0; i < iterations; i++) {
    let t = now()
    await lockAndFree(lib, 'lat')
    pairs.push(now() - t)
    // Interleaved so that drift hits the floor and the latency alike.
    t = now()
    await lib.ping()
    await lib.ping()
    floors.push(now() - t)
  }
  const p50Ms = percentile(pairs, 50)
  const floorP50Ms = percentile(floors, 50)
  return {
    metrics: { p50Ms, p99Ms: percentile(pairs, 99), floorP50Ms, p50OverFloor: p50Ms / floorP50Ms },
    notes: [],
  }
}

/**
 * 6. Process CPU per sequential lock+free, against the floor of two pings on
 * the library's own client: `iterations` of each, in `blocks` alternating
 * blocks so that drift on a busy machine hits both alike. Process CPU is
 * every thread of this process (ours: the JS thread and the Rust worker),
 * user plus system; the server runs in another process.
 */
export async function cpu(lib, { iterations, blocks }) {
  const per = Math.max(1, Math.round(iterations / blocks))
  let pairCpu = 0
  let pingCpu = 0
  let pairWall = 0
  let pairs = 0
  for (let block = 0; block < blocks; block++) {
    let c = process.cpuUsage()
    let t = now()
    for (let i = 0; i < per; i++) await lockAndFree(lib, 'cpu')
    pairWall += now() - t
    c = process.cpuUsage(c)
    pairCpu += c.user + c.system
    c = process.cpuUsage()
    for (let i = 0; i < per; i++) {
      await lib.ping()
      await lib.ping()
    }
    c = process.cpuUsage(c)
    pingCpu += c.user + c.system
    pairs += per
  }
  const cpuUsPerPair = pairCpu / pairs
  const floorCpuUs = pingCpu / pairs
  return {
    metrics: { cpuUsPerPair, floorCpuUs, cpuOverFloor: cpuUsPerPair / floorCpuUs, wallUsPerPair: (pairWall * 1000) / pairs },
    notes: [],
  }
}

/** 2. `loops` concurrent acquire/free loops on distinct keys for `durationMs`. */
export async function throughput(lib, { loops, durationMs }) {
  let pairs = 0
  const errors = errorTally()
  const start = now()
  const deadline = start + durationMs
  await Promise.all(Array.from({ length: loops }, async () => {
    while (now() < deadline) {
      if (await errors.attempt(() => lockAndFree(lib, 'tp'))) pairs++
    }
  }))
  return { metrics: { pairsPerSec: (pairs / (now() - start)) * 1000 }, notes: errors.notes('acquire+free pairs') }
}

/**
 * The pause after a failed attempt in the retry-with-backoff loop that
 * backends using stock mongo-locks write around `lock()` (which cannot wait).
 */
const backoffMs = (attempt) => Math.min(2 ** attempt * 5, 100) * (0.5 + Math.random())

/**
 * Waits for `key`: the library's own wait (ours: lock(key, { waitMs })),
 * and, if that gives up with null, that retry-with-backoff loop.
 */
export async function acquireWaiting(lib, key, waitMs, counts) {
  const lock = await lib.lockWaiting(key, waitMs)
  if (lock) return lock
  counts.fallbacks++
  // A key that never frees up (a holder whose free() failed) must not hang the benchmark.
  const giveUp = now() + 2 * waitMs
  for (let attempt = 0; ; attempt++) {
    if (now() > giveUp) throw new Error(`no hand-over of ${key} within ${(2 * waitMs) / 1000} s (${lib.library})`)
    await sleep(backoffMs(attempt))
    const retry = await lib.lock(key)
    if (retry) return retry
  }
}

/** 3. `waiters` tasks take one key `rounds` times each, holding it `holdMs`. */
export async function contention(lib, { waiters, rounds, holdMs, waitMs }) {
  const key = freshKey('hot')
  const waits = []
  const counts = { fallbacks: 0 }
  const start = now()
  await Promise.all(Array.from({ length: waiters }, async () => {
    for (let round = 0; round < rounds; round++) {
      const asked = now()
      const lock = await acquireWaiting(lib, key, waitMs, counts)
      waits.push(now() - asked)
      await sleep(holdMs)
      await lock.free()
    }
  }))
  const elapsed = now() - start
  const notes = []
  if (lib.library === 'ours' && counts.fallbacks > 0) {
    notes.push(`lock(key, { waitMs: ${waitMs} }) returned null ${counts.fallbacks} of ${waits.length} times; ` +
      'those waiters fell back to the retry-with-backoff loop')
  }
  return {
    metrics: {
      handoversPerSec: (waits.length / elapsed) * 1000,
      waitP50Ms: percentile(waits, 50),
      waitP99Ms: percentile(waits, 99),
    },
    notes,
    raw: { fallbacks: counts.fallbacks, acquisitions: waits.length },
  }
}

/** Heap and RSS after a full collection (when --expose-gc gave us gc()). */
function memory() {
  if (globalThis.gc) {
    globalThis.gc()
    globalThis.gc()
  }
  const { heapUsed, heapTotal, external, rss } = process.memoryUsage()
  return { heapUsed, heapTotal, external, rss }
}

/** Live libuv handles/requests and, among them, timers. */
function resources() {
  const info = process.getActiveResourcesInfo()
  return { all: info.length, timeouts: info.filter((name) => name === 'Timeout').length }
}

/**
 * 4. Holds `locks` locks and counts what the background refresh sends
 * during a window of two refresh intervals, then frees them. The window
 * opens one interval after the last acquisition, so that it sees the
 * steady state (ours does not refresh a lock in the tick right after it
 * was taken). `stockIntervalMs` is mongo-locks' fixed refresh period; when
 * the window is shorter, its refresh figures are not measurable (null).
 * `wire` (when the library talks through a counting relay, see wire.mjs):
 * every byte it sent and received during the window, refresh and the
 * driver's own monitoring alike, is counted there.
 */
export async function holding(lib, { locks, concurrency, windowMs, intervalMs, stockIntervalMs }, { wire } = {}) {
  const notes = []
  if (!globalThis.gc) notes.push('gc() unavailable (run with --expose-gc): memory deltas include garbage')
  const acquireErrors = errorTally()
  const freeErrors = errorTally()
  const baseMemory = memory()
  const baseResources = resources()

  const held = []
  const acquireStart = now()
  // In two halves: the first is the warm-up (pool connections, allocator
  // arenas, maps grown), the slope over the second is the cost of one more lock.
  const half = Math.floor(locks / 2)
  let halfMemory = null
  for (const [count, last] of [[half, false], [locks - half, true]]) {
    await pool(count, concurrency, async () => {
      const lock = await acquireErrors.attempt(() => lockFresh(lib, 'hold'))
      if (lock) held.push(lock)
    })
    if (!last) halfMemory = { ...memory(), held: held.length }
  }
  const acquireMs = now() - acquireStart
  if (held.length === 0) throw new Error(`no lock could be taken: ${acquireErrors.first}`)

  await sleep(intervalMs)
  const before = lib.refreshCounters()
  const wireBefore = wire ? await readWireCounts(wire.countsUrl) : null
  await sleep(windowMs)
  const after = lib.refreshCounters()
  const wireAfter = wire ? await readWireCounts(wire.countsUrl) : null
  const heldResources = resources()
  const heldMemory = memory()
  const secondHalf = held.length - halfMemory.held
  const stillLocked = held.filter((lock) => lock.locked).length

  const freeStart = now()
  await pool(held.length, concurrency, (i) => freeErrors.attempt(() => held[i].free()))
  const freeMs = now() - freeStart

  const commands = after.commands - before.commands
  const lockRefreshes = after.lockRefreshes - before.lockRefreshes
  const answered = after.answered - before.answered
  const answeredMs = (after.answeredSeconds - before.answeredSeconds) * 1000
  const interval = lib.library === 'stock' ? stockIntervalMs : intervalMs
  const measurable = windowMs >= interval
  if (!measurable) {
    notes.push(`the ${windowMs / 1000} s window is shorter than its ${interval / 1000} s refresh interval: ` +
      `refresh figures not measurable in this mode (sampled: ${commands} update commands)`)
  }
  notes.push(...acquireErrors.notes('acquisitions'), ...freeErrors.notes('frees'))
  if (stillLocked !== held.length) notes.push(`${held.length - stillLocked} of ${held.length} locks were lost during the hold`)
  const count = held.length
  // How many times every held lock was refreshed during the window: the
  // unit the per-refresh figures below are counted in.
  const fullRefreshes = lockRefreshes / count
  const perFullRefresh = (value) => (measurable && fullRefreshes > 0 ? value / fullRefreshes : null)
  if (!wire) notes.push('bytes on the wire not measured (only through the local server started by the benchmark)')
  const toServer = wire ? wireAfter.toServer - wireBefore.toServer : null
  const fromServer = wire ? wireAfter.fromServer - wireBefore.fromServer : null
  const refreshCommandMs = answered > 0 ? answeredMs / answered : null
  return {
    metrics: {
      refreshCommandsPerInterval: measurable ? commands * (interval / windowMs) : null,
      // Commands per refresh of every held lock: what batching saves,
      // whatever the refresh cadence turns out to be.
      refreshCommandsPerFullRefresh: perFullRefresh(commands),
      refreshCommandMs,
      // The time the server spends answering a refresh of every held lock:
      // one round trip for ours, one per lock for stock (spread over its
      // interval by its per-lock timers, but each a round trip all the same).
      refreshServerMsPerFullRefresh: refreshCommandMs === null ? null : perFullRefresh(commands * refreshCommandMs),
      bytesToServerPerFullRefresh: wire ? perFullRefresh(toServer) : null,
      bytesFromServerPerFullRefresh: wire ? perFullRefresh(fromServer) : null,
      lockRefreshesPerInterval: measurable ? lockRefreshes * (interval / windowMs) : null,
      heapBytesPerLock: (heldMemory.heapUsed - baseMemory.heapUsed) / count,
      rssBytesPerLock: (heldMemory.rss - baseMemory.rss) / count,
      rssSlopeBytesPerLock: secondHalf > 0 ? (heldMemory.rss - halfMemory.rss) / secondHalf : null,
      heapSlopeBytesPerLock: secondHalf > 0 ? (heldMemory.heapUsed - halfMemory.heapUsed) / secondHalf : null,
      resourcesWhileHolding: heldResources.all,
      timeoutsWhileHolding: heldResources.timeouts,
      timeoutsAdded: heldResources.timeouts - baseResources.timeouts,
      acquireMs,
      freeMs,
    },
    notes,
    raw: { held: count, windowMs, interval, commands, lockRefreshes, answered, answeredMs, toServer, fromServer, baseMemory, halfMemory, heldMemory, baseResources, heldResources },
  }
}

/**
 * 7. A burst: `locks` concurrent lock() calls on fresh keys, then all freed
 * at once; RSS after a full collection and a pause, against where it was
 * before the burst. Memory a burst grows and never gives back shows here.
 */
export async function burst(lib, { locks, settleMs }) {
  const notes = []
  const errors = errorTally()
  const before = memory()
  const started = now()
  const held = (await Promise.all(Array.from({ length: locks }, () => errors.attempt(() => lockFresh(lib, 'burst'))))).filter(Boolean)
  const peak = memory()
  await Promise.all(held.map((lock) => errors.attempt(() => lock.free())))
  const burstMs = now() - started
  held.length = 0
  await sleep(settleMs)
  // A full collection finalizes the burst's lock objects; ours gives their
  // memory back to the system 1 s after that (src/trim.rs), so read again
  // once that is past. Both libraries get the same collection and wait.
  memory()
  await sleep(1500)
  const after = memory()
  notes.push(...errors.notes('acquisitions or frees'))
  const mb = (bytes) => bytes / (1024 * 1024)
  return {
    metrics: {
      rssGrowthHeldMB: mb(peak.rss - before.rss),
      rssAfterBurstMB: mb(after.rss - before.rss),
      heapAfterBurstMB: mb(after.heapUsed - before.heapUsed),
      burstMs,
    },
    notes,
    raw: { locks, before, peak, after },
  }
}

/**
 * 5. A fixed offered load: pairs are started on a schedule of `ratePerSec`
 * (a 1 ms timer that launches every pair due so far, so timer coarseness
 * does not lower the rate), for `durationMs`; then the last ones drain.
 */
export async function eventLoop(lib, { ratePerSec, durationMs }) {
  const total = Math.round((ratePerSec * durationMs) / 1000)
  const errors = errorTally()
  const inFlight = []
  let launched = 0
  let completed = 0
  const pair = async () => {
    if (await errors.attempt(() => lockAndFree(lib, 'elu'))) completed++
  }
  const elu0 = performance.eventLoopUtilization()
  const cpu0 = process.cpuUsage()
  const start = now()
  await new Promise((resolve) => {
    const tick = () => {
      const due = Math.min(total, Math.floor(((now() - start) * ratePerSec) / 1000))
      for (; launched < due; launched++) inFlight.push(pair())
      if (launched < total) setTimeout(tick, 1)
      else resolve()
    }
    tick()
  })
  await Promise.all(inFlight)
  const elapsed = now() - start
  const { utilization } = performance.eventLoopUtilization(elu0)
  const cpu = process.cpuUsage(cpu0)
  const achievedPerSec = (completed / elapsed) * 1000
  const notes = errors.notes('acquire+free pairs')
  if (achievedPerSec < ratePerSec * 0.9) {
    notes.push(`completed ${achievedPerSec.toFixed(0)} pairs/s of the ${ratePerSec} offered: saturated, so its ELU is not at the offered load`)
  }
  return {
    metrics: { elu: utilization, cpuUsPerPair: (cpu.user + cpu.system) / completed, achievedPerSec },
    notes,
  }
}

/** What a once() run hands back: a small object, as an idempotent request's reply would be. */
const smallResult = () => ({ status: 'paid', amount: 4200, currency: 'EUR', at: new Date() })

/**
 * 9. once(key, fn): the first call on a key (it runs `fn`, which returns a
 * small object at once, and stores it) and a replayed call on that key (it
 * gets the stored result), beside a plain lock() + free() on a fresh key,
 * in the same process and interleaved, so that drift hits all three alike.
 * Stock mongo-locks has no once(): its run measures lock() + free() alone,
 * the yardstick the report divides ours by. Then the server commands each
 * kind of call sends, counted on the server (FerretDB's request counter, or
 * serverStatus on a MONGO_URL), over `commandCalls` calls of each kind.
 * Records stay (a day, by default) where locks are freed, so the collection
 * grows by one record per first run: the first and last tenth of the first
 * runs are shown apart, as a server that scans (FerretDB on SQLite) slows
 * with the number of live records.
 */
export async function once(lib, { iterations, commandCalls }, { url, metricsUrl }) {
  const notes = []
  const hasOnce = typeof lib.once === 'function'
  const runFresh = async () => {
    const key = freshKey('once')
    let ran = 0
    const first = await lib.once(key, async () => {
      ran++
      return smallResult()
    })
    if (ran !== 1 || first.status !== 'paid') throw new Error(`once() on a fresh key did not run its function once (ran ${ran} times)`)
    return key
  }
  const replay = async (key) => {
    const again = await lib.once(key, async () => {
      throw new Error(`once() ran ${key} a second time instead of replaying it`)
    })
    if (again.status !== 'paid') throw new Error(`once() replayed ${JSON.stringify(again)}, not the stored result`)
  }

  const pairs = []
  const firsts = []
  const replays = []
  for (let i = 0; i < iterations; i++) {
    let t = now()
    await lockAndFree(lib, 'once-pair')
    pairs.push(now() - t)
    if (!hasOnce) continue
    t = now()
    const key = await runFresh()
    firsts.push(now() - t)
    t = now()
    await replay(key)
    replays.push(now() - t)
  }

  // Commands per call: each kind in a block of its own between two reads of
  // the server's counters. The drivers' heartbeats land in some blocks; over
  // `commandCalls` calls they add a few hundredths per call.
  const perCall = { pair: null, first: null, replay: null }
  let counter = null
  try {
    counter = await serverCommandCounter({ url, metricsUrl })
    const count = async (kind, call) => {
      const before = await counter.read()
      for (let i = 0; i < commandCalls; i++) await call()
      const after = await counter.read()
      const byCommand = {}
      for (const [command, n] of Object.entries(after)) {
        const delta = n - (before[command] ?? 0)
        if (delta) byCommand[command] = delta
      }
      const total = Object.values(byCommand).reduce((a, b) => a + b, 0)
      perCall[kind] = total / commandCalls
      const shown = Object.entries(byCommand).sort((a, b) => b[1] - a[1]).map(([c, n]) => `${c} ${(n / commandCalls).toFixed(2)}`).join(', ')
      notes.push(`server commands per ${kind === 'pair' ? 'lock() + free()' : kind === 'first' ? 'first once() run' : 'replayed once()'} (${counter.source}): ${shown}`)
    }
    await count('pair', () => lockAndFree(lib, 'once-count'))
    if (hasOnce) {
      const keys = []
      await count('first', async () => keys.push(await runFresh()))
      let next = 0
      await count('replay', () => replay(keys[next++]))
    }
  } catch (error) {
    notes.push(`server commands not counted: ${error.message}`)
  } finally {
    await counter?.close()
  }

  const pairP50Ms = percentile(pairs, 50)
  const firstP50Ms = percentile(firsts, 50)
  const replayP50Ms = percentile(replays, 50)
  const over = (a, b) => (a === null || b === null ? null : a / b)
  const tenth = Math.max(1, Math.floor(firsts.length / 10))
  return {
    metrics: {
      firstEarlyP50Ms: percentile(firsts.slice(0, tenth), 50),
      firstLateP50Ms: percentile(firsts.slice(-tenth), 50),
      pairP50Ms,
      pairP99Ms: percentile(pairs, 99),
      firstP50Ms,
      firstP99Ms: percentile(firsts, 99),
      replayP50Ms,
      replayP99Ms: percentile(replays, 99),
      firstOverPair: over(firstP50Ms, pairP50Ms),
      replayOverPair: over(replayP50Ms, pairP50Ms),
      pairCommands: perCall.pair,
      firstCommands: perCall.first,
      replayCommands: perCall.replay,
    },
    notes,
  }
}

export const SCENARIOS = { uncontended, throughput, contention, holding, eventLoop, cpu, burst, handover, once }
