'use strict'
// `locker.metrics()` and `locker.registerMetrics(registry)`: the manager's
// counters, gauges and histograms (read from Rust in one snapshot) as
// Prometheus metric families, rendered in the text exposition format or
// handed to a prom-client registry. Names follow Prometheus conventions
// (`mongo_locks_` prefix, `_total` counters, `_seconds` histograms in base
// units). Lock keys never become labels: the series are per manager, and the
// only labels are the constant ones the application passes.

const COUNTERS = [
  ['acquired', 'Locks acquired by lock(), lockAll() and the helpers.'],
  ['contended', 'Lock attempts that found the key held by someone else.'],
  ['taken_over', 'Acquisitions that first removed an expired lock (a crashed or stalled holder).'],
  ['lost', 'Locks lost while held: document gone, or expiry passed without a refresh.'],
  ['refreshes', 'Lock refreshes written, each lock counted once per refresh.'],
  ['refresh_commands', 'Refresh commands sent by the background refresh (one per batch of up to 1,000 locks).'],
  ['errors', 'Operations that failed with a server or driver error.'],
  ['once_runs', 'once() calls that started a run of their function: no live record of the key (failed runs included).'],
  ['once_replays', 'once() calls answered from a finished record of the key, without running: its stored result, or its remembered failure.'],
  ['once_mismatches', 'once() calls refused because the key ran before with a different payload (OnceMismatchError); nothing ran.'],
  ['once_takeovers', 'once() runs that began by taking over the record of a run whose process stopped refreshing it (died, paused or cut off past the ttl), so ran again.'],
]
const COUNTER_FIELDS = {
  acquired: 'acquired',
  contended: 'contended',
  taken_over: 'takenOver',
  lost: 'lost',
  refreshes: 'refreshes',
  refresh_commands: 'refreshCommands',
  errors: 'errors',
  once_runs: 'onceRuns',
  once_replays: 'onceReplays',
  once_mismatches: 'onceMismatches',
  once_takeovers: 'onceTakeovers',
}
const HISTOGRAMS = [
  ['acquire_seconds', 'acquireSeconds', 'Time from a lock() call to the lock, for calls that got one (waiting included).'],
  ['wait_seconds', 'waitSeconds', 'Time spent waiting for a held key, for calls that had to wait (any outcome).'],
  ['hold_seconds', 'holdSeconds', 'Time from acquiring a lock to freeing or losing it.'],
  ['refresh_seconds', 'refreshSeconds', 'Round trip of one refresh command.'],
]
const PREFIX = 'mongo_locks_'
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/

/** Checks constant labels: `{ name: value }`, Prometheus label names, string values. */
function checkLabels(labels) {
  if (labels === undefined) return {}
  if (labels === null || typeof labels !== 'object' || Array.isArray(labels)) {
    throw new TypeError(`mongo-locks-native: metrics labels must be an object of { name: value }, got ${labels === null ? 'null' : typeof labels}`)
  }
  for (const [name, value] of Object.entries(labels)) {
    if (!LABEL_NAME.test(name) || name.startsWith('__') || name === 'le') {
      throw new TypeError(`mongo-locks-native: metrics label name ${JSON.stringify(name)} is not a valid Prometheus label name (or is reserved)`)
    }
    if (typeof value !== 'string') throw new TypeError(`mongo-locks-native: metrics label ${name} must be a string, got ${typeof value}`)
  }
  return { ...labels }
}

/** The metric families of one snapshot (`locker.metricsSnapshot()`), with constant `labels`. */
function families(snapshot, labels) {
  const out = [
    { name: `${PREFIX}held`, help: 'Locks this manager holds now.', type: 'gauge', values: [{ labels, value: snapshot.counters.held }] },
    { name: `${PREFIX}waiting`, help: 'Callers waiting for a held key now.', type: 'gauge', values: [{ labels, value: snapshot.waiting }] },
  ]
  for (const [name, help] of COUNTERS) {
    out.push({ name: `${PREFIX}${name}_total`, help, type: 'counter', values: [{ labels, value: snapshot.counters[COUNTER_FIELDS[name]] }] })
  }
  for (const [name, field, help] of HISTOGRAMS) {
    const h = snapshot[field]
    const full = `${PREFIX}${name}`
    const values = h.bounds.map((le, i) => ({ metricName: `${full}_bucket`, labels: { ...labels, le: String(le) }, value: h.cumulative[i] }))
    values.push({ metricName: `${full}_bucket`, labels: { ...labels, le: '+Inf' }, value: h.cumulative[h.bounds.length] })
    values.push({ metricName: `${full}_sum`, labels, value: h.sum })
    values.push({ metricName: `${full}_count`, labels, value: h.count })
    out.push({ name: full, help, type: 'histogram', values })
  }
  return out
}

const escapeLabel = (v) => v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')
const escapeHelp = (v) => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')

/** The text exposition format (version 0.0.4). */
function render(list) {
  const lines = []
  for (const f of list) {
    lines.push(`# HELP ${f.name} ${escapeHelp(f.help)}`, `# TYPE ${f.name} ${f.type}`)
    for (const v of f.values) {
      const pairs = Object.entries(v.labels).map(([k, val]) => `${k}="${escapeLabel(val)}"`)
      lines.push(`${v.metricName ?? f.name}${pairs.length ? `{${pairs.join(',')}}` : ''} ${v.value}`)
    }
  }
  return `${lines.join('\n')}\n`
}

/** The content type of `render`'s output, for an HTTP response. */
const CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8'

/**
 * Registers the manager's metrics with a prom-client `Registry` (anything
 * with `registerMetric`): each family as a metric object whose `get()` reads a
 * fresh snapshot, so the registry's own scrape (`registry.metrics()`) shows
 * them beside the application's.
 */
function register(locker, registry, labels) {
  if (!registry || typeof registry.registerMetric !== 'function') {
    throw new TypeError('mongo-locks-native: registerMetrics(registry) needs a prom-client Registry (from `new Registry()` or `register`)')
  }
  for (const f of families(locker.metricsSnapshot(), labels)) {
    registry.registerMetric({
      name: f.name,
      help: f.help,
      type: f.type,
      aggregator: 'sum',
      async get() {
        const fresh = families(locker.metricsSnapshot(), labels).find((x) => x.name === f.name)
        return { name: f.name, help: f.help, type: f.type, aggregator: 'sum', values: fresh.values }
      },
      reset() {},
    })
  }
}

module.exports = { checkLabels, families, render, register, CONTENT_TYPE }
