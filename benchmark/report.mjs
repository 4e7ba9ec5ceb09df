// Turns the per-run measurements into medians, ratios, the goals,
// a plain-text table, a Markdown table and the results.json object.
import { LABELS, LIBRARIES } from './libraries.mjs'
import { median, ratio } from './stats.mjs'

export const SCENARIO_TITLES = {
  uncontended: '1. Uncontended latency',
  throughput: '2. Throughput',
  contention: '3. Contention',
  holding: '4. Holding many',
  eventLoop: '5. Event loop',
  cpu: '6. CPU per lock+free',
  burst: '7. Burst',
  handover: '8. Cross-process hand-over',
  once: '9. once()',
}

/**
 * What the table shows, in order; `digits` is the number of decimals. A row
 * with `derived` is computed from the medians of the rows above it (ours
 * over stock's, across libraries), not measured in a run: its stock column
 * and ratio are empty.
 */
const METRICS = {
  uncontended: [
    { key: 'p50Ms', label: 'lock+free p50 (ms)', digits: 3 },
    { key: 'p99Ms', label: 'lock+free p99 (ms)', digits: 3 },
    { key: 'floorP50Ms', label: 'two-ping floor p50, own driver (ms)', digits: 3 },
    { key: 'p50OverFloor', label: 'p50 / own two-ping floor', digits: 2 },
  ],
  cpu: [
    { key: 'cpuUsPerPair', label: 'process CPU per uncontended lock+free (µs)', digits: 0 },
    { key: 'floorCpuUs', label: 'process CPU per two pings, own client (µs)', digits: 0 },
    { key: 'cpuOverFloor', label: 'lock+free CPU / own two-ping CPU', digits: 2 },
    { key: 'wallUsPerPair', label: 'lock+free wall time, mean (µs)', digits: 0 },
  ],
  burst: [
    { key: 'rssGrowthHeldMB', label: 'RSS growth while all held (MB)', digits: 1 },
    { key: 'rssAfterBurstMB', label: 'RSS after the burst, freed, vs before (MB)', digits: 1 },
    { key: 'heapAfterBurstMB', label: 'JS heap after the burst vs before (MB)', digits: 1 },
    { key: 'burstMs', label: 'time to take and free all (ms)', digits: 0 },
  ],
  throughput: [
    { key: 'pairsPerSec', label: 'acquire+free pairs/s', digits: 0 },
  ],
  contention: [
    { key: 'handoversPerSec', label: 'hand-overs/s', digits: 1 },
    { key: 'waitP50Ms', label: 'wait p50 (ms)', digits: 1 },
    { key: 'waitP99Ms', label: 'wait p99 (ms)', digits: 1 },
  ],
  holding: [
    { key: 'refreshCommandsPerInterval', label: 'refresh DB commands per refresh interval', digits: 1 },
    { key: 'refreshCommandsPerFullRefresh', label: 'refresh DB commands per refresh of all held locks', digits: 1 },
    { key: 'lockRefreshesPerInterval', label: 'locks refreshed per refresh interval', digits: 0 },
    { key: 'refreshCommandMs', label: 'round trip of one refresh command, mean (ms)', digits: 1 },
    { key: 'refreshServerMsPerFullRefresh', label: 'refresh round trips per refresh of all held locks (ms, summed)', digits: 0 },
    { key: 'bytesToServerPerFullRefresh', label: 'bytes sent per refresh of all held locks (all traffic)', digits: 0 },
    { key: 'bytesFromServerPerFullRefresh', label: 'bytes received per refresh of all held locks (all traffic)', digits: 0 },
    { key: 'heapBytesPerLock', label: 'JS heap per held lock (B)', digits: 0 },
    { key: 'rssBytesPerLock', label: 'RSS per held lock (B)', digits: 0 },
    { key: 'rssSlopeBytesPerLock', label: 'RSS per held lock, slope over the second half (B)', digits: 0 },
    { key: 'heapSlopeBytesPerLock', label: 'JS heap per held lock, slope over the second half (B)', digits: 0 },
    { key: 'resourcesWhileHolding', label: 'active resources while holding', digits: 0 },
    { key: 'timeoutsWhileHolding', label: '… of which Timeout', digits: 0 },
    { key: 'timeoutsAdded', label: 'Timeouts added by holding', digits: 0 },
    { key: 'acquireMs', label: 'time to acquire all (ms)', digits: 0 },
    { key: 'freeMs', label: 'time to free all (ms)', digits: 0 },
  ],
  // Lower is better for the latencies and the commands; a hand-over is the
  // gap from one holder's free() call to the next holder's acquisition.
  handover: [
    { key: 'crossP50Ms', label: 'hand-over to another process p50 (ms)', digits: 1 },
    { key: 'crossP99Ms', label: 'hand-over to another process p99 (ms)', digits: 1 },
    { key: 'sameP50Ms', label: 'hand-over within a process p50 (ms)', digits: 1 },
    { key: 'crossShare', label: 'share of hand-overs to another process', digits: 2 },
    { key: 'crossHandovers', label: 'hand-overs to another process (count)', digits: 0 },
    { key: 'handoversPerSec', label: 'hand-overs/s', digits: 1 },
    { key: 'commandsPerSec', label: 'server commands/s during the run (all processes)', digits: 0 },
    { key: 'commandsPerAcquisition', label: 'server commands per acquisition', digits: 1 },
    { key: 'overlaps', label: 'overlapping holders (must be 0)', digits: 0 },
  ],
  // Stock mongo-locks has no once(): its column has lock() + free() only,
  // and the ratios to its lock() + free() are in our column.
  once: [
    { key: 'pairP50Ms', label: 'lock+free p50 (ms)', digits: 3 },
    { key: 'firstP50Ms', label: 'once() first run p50 (ms)', digits: 3 },
    { key: 'replayP50Ms', label: 'once() replayed p50 (ms)', digits: 3 },
    { key: 'firstP99Ms', label: 'once() first run p99 (ms)', digits: 3 },
    { key: 'replayP99Ms', label: 'once() replayed p99 (ms)', digits: 3 },
    { key: 'firstEarlyP50Ms', label: 'once() first run p50, first tenth of the calls (ms)', digits: 3 },
    { key: 'firstLateP50Ms', label: 'once() first run p50, last tenth, more records kept (ms)', digits: 3 },
    { key: 'firstOverPair', label: 'first run p50 / own lock+free p50', digits: 2 },
    { key: 'replayOverPair', label: 'replayed p50 / own lock+free p50', digits: 2 },
    { key: 'firstOverStockPair', label: 'first run p50 / mongo-locks lock+free p50', digits: 2, derived: (m) => ratio(m.firstP50Ms.ours, m.pairP50Ms.stock) },
    { key: 'replayOverStockPair', label: 'replayed p50 / mongo-locks lock+free p50', digits: 2, derived: (m) => ratio(m.replayP50Ms.ours, m.pairP50Ms.stock) },
    { key: 'pairCommands', label: 'server commands per lock+free', digits: 2 },
    { key: 'firstCommands', label: 'server commands per once() first run', digits: 2 },
    { key: 'replayCommands', label: 'server commands per once() replayed', digits: 2 },
  ],
  eventLoop: [
    { key: 'elu', label: 'event-loop utilization', digits: 3 },
    { key: 'cpuUsPerPair', label: 'process CPU per pair (µs)', digits: 0 },
    { key: 'achievedPerSec', label: 'completed pairs/s', digits: 0 },
  ],
}

/**
 * Scenario 4 runs once per number of held locks, its runs keyed
 * `holding:<locks>`; the others are keyed by their name alone.
 */
export const baseScenario = (key) => key.split(':')[0]

/** "4. Holding 10,000 locks" for `holding:10000`, the plain title otherwise. */
export function scenarioTitle(key) {
  const [base, locks] = key.split(':')
  return locks === undefined ? SCENARIO_TITLES[base] : `${SCENARIO_TITLES[base]} (${Number(locks).toLocaleString('en-US')} locks)`
}

/**
 * runs: { [scenario]: { ours: [result…], stock: [result…] } } →
 * { [scenario]: { title, metrics: { [key]: { label, ours, stock, ratio, runs } } } }
 * Medians are taken per library over the runs; ratio = median(ours) / median(stock).
 */
export function summarize(runs) {
  const summary = {}
  for (const [scenario, byLibrary] of Object.entries(runs)) {
    const metrics = {}
    for (const { key, label, derived } of METRICS[baseScenario(scenario)]) {
      if (derived) {
        metrics[key] = { label, ours: derived(metrics), stock: null, ratio: null, runs: null }
        continue
      }
      const values = Object.fromEntries(LIBRARIES.map((lib) => [lib, byLibrary[lib].map((r) => r.metrics[key] ?? null)]))
      const ours = median(values.ours)
      const stock = median(values.stock)
      metrics[key] = { label, ours, stock, ratio: ratio(ours, stock), runs: values }
    }
    summary[scenario] = { title: scenarioTitle(scenario), metrics }
  }
  return summary
}

/** The goals (for the scenarios that ran), each with the measured value and met / missed. */
export function evaluateTargets(summary, config) {
  const m = (scenario, key) => summary[scenario].metrics[key]
  const x = (v) => (v === null ? 'n/a' : `${v.toFixed(2)}×`)
  const checks = {
    uncontended: () => {
      const p50 = m('uncontended', 'p50Ms').ratio
      const floor = m('uncontended', 'p50OverFloor').ours
      return [
        ['our p50 ≤ 1.0× mongo-locks p50', p50, p50 <= 1.0, x(p50)],
        ['our p50 ≤ 1.3× our two-ping floor', floor, floor <= 1.3, x(floor)],
      ]
    },
    cpu: () => {
      const stock = m('cpu', 'cpuUsPerPair').ratio
      const floor = m('cpu', 'cpuOverFloor').ours
      return [
        ['CPU per uncontended lock+free ≤ 0.5× mongo-locks', stock, stock <= 0.5, x(stock)],
        ['CPU per uncontended lock+free ≤ 1.2× two pings on our own client', floor, floor <= 1.2, x(floor)],
      ]
    },
    burst: () => {
      const after = m('burst', 'rssAfterBurstMB').ours
      return [[`RSS after a burst of ${config.scenarios.burst.locks} concurrent acquisitions and their release within 5 MB of before`, after, after <= 5, after === null ? 'n/a' : `${after.toFixed(1)} MB`]]
    },
    throughput: () => {
      const tp = m('throughput', 'pairsPerSec').ratio
      return [['throughput ≥ 1.2× mongo-locks', tp, tp >= 1.2, x(tp)]]
    },
    holding: (key) => {
      const locks = Number(key.split(':')[1])
      // Per refresh of every held lock (a round), so that a slower refresh
      // cadence cannot pass for fewer commands. Per interval is shown beside
      // it: a window of two intervals sees two or three answered rounds,
      // depending on how their round trips fall at its edges.
      const perInterval = m(key, 'refreshCommandsPerInterval').ours
      const perFull = m(key, 'refreshCommandsPerFullRefresh').ours
      const rss = m(key, 'rssSlopeBytesPerLock').ours
      const heap = m(key, 'heapSlopeBytesPerLock').ours
      const timers = m(key, 'timeoutsAdded').ours
      return [
        // To the tenth shown: a lock lost or freed mid-window makes a round
        // refresh one lock fewer than were held, and the ratio a hair above 1.
        [`one refresh command per refresh of all held locks, whatever their number (${locks} held)`, perFull, Number(perFull?.toFixed(1)) <= 1,
          perFull === null ? 'n/a' : `${perFull.toFixed(1)} per refresh of all, ${perInterval.toFixed(1)} per interval`],
        // RSS is the only figure that sees the Rust side's memory; the heap is shown too.
        ['≤ 1 KiB memory per held lock (RSS slope over the second half)', rss, rss <= 1024, rss === null ? 'n/a' : `RSS ${rss.toFixed(0)} B, heap ${heap.toFixed(0)} B`],
        // A timer per lock would add about `locks` Timeouts; allow a handful of fixed ones.
        ['no timer per held lock', timers, timers < Math.max(5, locks / 100), `${timers} Timeouts added for ${locks} locks`],
      ]
    },
    eventLoop: () => {
      const elu = m('eventLoop', 'elu').ratio
      return [['event-loop utilization ≤ 0.3× mongo-locks', elu, elu <= 0.3, x(elu)]]
    },
    handover: () => {
      const { processes, waitersPerProcess } = config.scenarios.handover
      const p50 = m('handover', 'crossP50Ms')
      const cps = m('handover', 'commandsPerSec')
      const ms = (v) => (v === null ? 'n/a' : `${v.toFixed(1)} ms`)
      const perSec = (v) => (v === null ? 'n/a' : v.toFixed(0))
      // The goal's condition beside it: no more server load than the
      // retry-with-backoff of today; both figures shown, not judged here.
      const shown = `${ms(p50.ours)} (mongo-locks ${ms(p50.stock)}); server commands/s ours ${perSec(cps.ours)}, mongo-locks ${perSec(cps.stock)}`
      return [[`cross-process hand-over median ≤ 10 ms at ${processes * waitersPerProcess} waiters across ${processes} processes`, p50.ours, p50.ours <= 10, shown]]
    },
  }
  return Object.keys(summary)
    .filter((key) => baseScenario(key) in checks)
    .flatMap((key) => checks[baseScenario(key)](key).map((row) => [summary[key].title, ...row]))
    .map(([scenario, text, value, met, shown]) => ({ scenario, text, value, met: value === null ? null : met, shown }))
}

const fmt = (value, digits) => (value === null || value === undefined ? 'n/a' : value.toFixed(digits))
/** Two decimals, or two significant digits for tiny ratios (0.0011×, not 0.00×). */
const fmtRatio = (value) => {
  if (value === null || value === undefined) return '–'
  return `${Math.abs(value) >= 0.1 || value === 0 ? value.toFixed(2) : value.toPrecision(2)}×`
}
const verdict = (met) => (met === null ? 'n/a' : met ? 'met' : 'MISSED')

/** Rows of [scenario, metric, ours, stock, ratio] for both tables. */
function rows(summary) {
  const out = []
  for (const [scenario, { title, metrics }] of Object.entries(summary)) {
    METRICS[baseScenario(scenario)].forEach(({ key, digits }, i) => {
      const { label, ours, stock, ratio: r } = metrics[key]
      out.push([i === 0 ? title : '', label, fmt(ours, digits), fmt(stock, digits), fmtRatio(r)])
    })
  }
  return out
}

const HEADER = ['Scenario', 'Metric', LABELS.ours, LABELS.stock, 'ours / stock']

export function textTable(summary) {
  const all = [HEADER, ...rows(summary)]
  const widths = HEADER.map((_, c) => Math.max(...all.map((row) => row[c].length)))
  const line = (row) => row.map((cell, c) => (c < 2 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join('  ')
  return [line(HEADER), widths.map((w) => '─'.repeat(w)).join('  '), ...rows(summary).map(line)].join('\n')
}

export function markdownTable(summary) {
  const line = (row) => `| ${row.join(' | ')} |`
  return [line(HEADER), '| --- | --- | ---: | ---: | ---: |', ...rows(summary).map(line)].join('\n')
}

export function targetLines(targets) {
  return targets.map((t) => `  [${verdict(t.met).padEnd(6)}] ${t.scenario}: ${t.text}: ${t.shown}`).join('\n')
}
