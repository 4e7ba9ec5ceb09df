// 8. Cross-process hand-over: how long a key stays free between
// one holder's free() and the next holder's acquisition, when the waiters
// are in other processes. Scenario 3 measures queueing (32 waiters of one
// process wait for each other); this one measures the hand-over itself.
//
// The measuring process (worker.mjs, which opened the collection and drops
// it at the end) forks `processes` participants (handover-participant.mjs),
// each with `waitersPerProcess` waiters on one shared key. A start barrier
// lets them go together once all are connected and warmed up. Each reports
// when every acquisition resolved and when its free() was called, on
// process.hrtime.bigint(): CLOCK_MONOTONIC on Linux, one clock for all
// processes of the machine, so the timelines merge.
//
// Server load is counted on the server, where every process's commands
// meet: FerretDB's Prometheus counter of requests, or, on a real MongoDB
// (MONGO_URL), serverStatus().opcounters; read before and after the run.
import { fork } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { percentile } from './stats.mjs'
import { serverCommandCounter } from '../__test__/support/command-counter.mjs'

const here = path.dirname(fileURLToPath(import.meta.url))

/** { [command]: after − before }, without the zeros, and their sum. */
function commandDelta(before, after) {
  const byCommand = {}
  for (const [command, count] of Object.entries(after)) {
    const delta = count - (before[command] ?? 0)
    if (delta) byCommand[command] = delta
  }
  return { byCommand, total: Object.values(byCommand).reduce((a, b) => a + b, 0) }
}

/**
 * One participant process, with its messages awaited by type: next('ready')
 * resolves on { type: 'ready' }, and rejects if the process reports an error
 * or exits first.
 */
function startParticipant(job) {
  const child = fork(path.join(here, 'handover-participant.mjs'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const arrived = new Map()
  const waiting = new Map()
  let failure = null
  const fail = (error) => {
    failure ??= error
    for (const { reject } of waiting.values()) reject(failure)
    waiting.clear()
  }
  child.on('message', (message) => {
    if (message.type === 'error') return fail(new Error(`hand-over participant ${child.pid} failed:\n${message.error}`))
    const waiter = waiting.get(message.type)
    if (waiter) {
      waiting.delete(message.type)
      waiter.resolve(message)
    } else {
      arrived.set(message.type, message)
    }
  })
  child.on('error', fail)
  const exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      fail(new Error(`hand-over participant ${child.pid} exited (${code ?? signal}) before it was done`))
      resolve(code)
    })
  })
  child.send(job)
  return {
    child,
    exited,
    next(type) {
      if (arrived.has(type)) return Promise.resolve(arrived.get(type))
      if (failure) return Promise.reject(failure)
      return new Promise((resolve, reject) => waiting.set(type, { resolve, reject }))
    },
    send: (message) => child.send(message),
  }
}

/**
 * The hand-overs of merged acquisitions ({ pid, acquiredNs, freeCalledNs },
 * nanoseconds as strings): sorted by acquisition, each one after the first
 * is a hand-over from the one before it, its gap the time from that one's
 * free() call to this acquisition. An acquisition before every earlier
 * holder had called free() is an overlap: two holders at once.
 */
export function analyzeHandovers(acquisitions) {
  const sorted = acquisitions
    .map((a) => ({ pid: a.pid, acquired: BigInt(a.acquiredNs), freeCalled: BigInt(a.freeCalledNs) }))
    .sort((a, b) => (a.acquired < b.acquired ? -1 : a.acquired > b.acquired ? 1 : 0))
  const cross = []
  const same = []
  let overlaps = 0
  let lastFree = sorted[0]?.freeCalled ?? 0n
  for (let i = 1; i < sorted.length; i++) {
    const previous = sorted[i - 1]
    const next = sorted[i]
    // Against every earlier free, not only the previous one: a holder that
    // overlapped a long one would otherwise hide the overlap behind it.
    if (next.acquired < lastFree) overlaps++
    else (next.pid === previous.pid ? same : cross).push(Number(next.acquired - previous.freeCalled) / 1e6)
    if (next.freeCalled > lastFree) lastFree = next.freeCalled
  }
  const spanMs = sorted.length ? Number(lastFree - sorted[0].acquired) / 1e6 : 0
  // How the key went round: the pid of each holder in turn, runs collapsed.
  const turns = []
  for (const { pid } of sorted) {
    if (turns.at(-1)?.pid === pid) turns.at(-1).count++
    else turns.push({ pid, count: 1 })
  }
  return { cross, same, overlaps, spanMs, turns }
}

/** 8. `processes` × `waitersPerProcess` waiters take one key `rounds` times each, holding it `holdMs`. */
export async function handover(lib, { processes, waitersPerProcess, rounds, holdMs, waitMs }, { library, url, metricsUrl, collectionName }) {
  const notes = []
  const participants = []
  let counter = null
  try {
    for (let i = 0; i < processes; i++) {
      participants.push(startParticipant({ library, url, collectionName, waiters: waitersPerProcess, rounds, holdMs, waitMs }))
    }
    await Promise.all(participants.map((p) => p.next('ready')))

    counter = await serverCommandCounter({ url, metricsUrl }).catch((error) => {
      notes.push(`server commands not counted: ${error.message}`)
      return null
    })
    const before = await counter?.read().catch((error) => {
      notes.push(`server commands not counted: ${error.message}`)
      return null
    })
    const started = process.hrtime.bigint()
    for (const p of participants) p.send({ type: 'start' })
    const reports = await Promise.all(participants.map((p) => p.next('done')))
    const elapsedMs = Number(process.hrtime.bigint() - started) / 1e6
    const after = before ? await counter.read().catch(() => null) : null

    // Closed without dropping; this process drops the collection once all are gone.
    for (const p of participants) p.send({ type: 'close' })
    await Promise.all(participants.map((p) => p.exited))

    const acquisitions = reports.flatMap((r) => r.acquisitions)
    const { cross, same, overlaps, spanMs, turns } = analyzeHandovers(acquisitions)
    const handovers = cross.length + same.length
    const commands = before && after ? commandDelta(before, after) : null
    if (commands) {
      const shown = Object.entries(commands.byCommand).sort((a, b) => b[1] - a[1]).map(([c, n]) => `${c} ${n}`).join(', ')
      notes.push(`server commands during a run (${counter.source}): ${shown}`)
    }
    const fallbacks = reports.reduce((sum, r) => sum + r.fallbacks, 0)
    if (library === 'ours' && fallbacks > 0) {
      notes.push(`lock(key, { waitMs: ${waitMs} }) returned null ${fallbacks} of ${acquisitions.length} times; those waiters fell back to the retry-with-backoff loop`)
    }
    for (const r of reports) notes.push(...r.notes)
    if (overlaps) notes.push(`${overlaps} acquisitions came before an earlier holder had called free(): two holders at once`)
    // The key's path through the processes (p1…p4 in fork order), runs of one process collapsed.
    const name = new Map(reports.map((r, i) => [r.pid, `p${i + 1}`]))
    const route = turns.slice(0, 24).map(({ pid, count }) => `${name.get(pid)}×${count}`).join(' ')
    notes.push(`holders in turn: ${route}${turns.length > 24 ? ` … (${turns.length} turns)` : ''}`)
    return {
      metrics: {
        crossP50Ms: percentile(cross, 50),
        crossP99Ms: percentile(cross, 99),
        sameP50Ms: percentile(same, 50),
        crossShare: handovers ? cross.length / handovers : null,
        crossHandovers: cross.length,
        handoversPerSec: spanMs > 0 ? (handovers / spanMs) * 1000 : null,
        commandsPerSec: commands ? (commands.total / elapsedMs) * 1000 : null,
        commandsPerAcquisition: commands ? commands.total / acquisitions.length : null,
        overlaps,
      },
      notes,
      raw: { acquisitions: acquisitions.length, elapsedMs, spanMs, commands, fallbacks },
    }
  } finally {
    for (const p of participants) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL')
    await counter?.close()
  }
}
