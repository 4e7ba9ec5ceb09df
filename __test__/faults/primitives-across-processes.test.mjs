// Semaphores, read/write locks, leader election and minHoldMs across
// processes, against the real server. Each test runs several worker
// processes (fixtures/primitive-worker.mjs) that log, synchronously, when
// they start and stop believing they hold something, on CLOCK_MONOTONIC
// (one clock for every process of this machine). One holder is killed with
// SIGKILL part-way: its open interval ends at the kill. The checkers below
// sweep the intervals and look for the violation each primitive forbids.
import { describe, it, expect, beforeEach, afterEach } from 'vitest'
import { mkdtempSync, readdirSync, readFileSync, rmSync, appendFileSync, existsSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { freshCollection, lib, root, sleep, startNode, eventually } from '../support/suite.mjs'

const { LockManager } = lib
const worker = path.join(root, '__test__', 'fixtures', 'primitive-worker.mjs')
const TTL = 2000
const REFRESH = 500
const mono = () => process.hrtime.bigint()
const ms = (ns) => Number(ns) / 1e6

/** Every worker's log lines, with the worker's name. */
function readLogs(dir) {
  const events = []
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.jsonl'))) {
    for (const line of readFileSync(path.join(dir, file), 'utf8').split('\n').filter(Boolean)) {
      events.push({ ...JSON.parse(line), worker: file.replace('.jsonl', ''), t: BigInt(JSON.parse(line).t) })
    }
  }
  return events.sort((a, b) => (a.t < b.t ? -1 : a.t > b.t ? 1 : 0))
}

/** Believed-held intervals; an interval left open ends at its worker's kill (or at `end`). */
function intervals(events, kills = {}, end = mono()) {
  const open = new Map()
  const out = []
  for (const e of events) {
    if (e.ev === 'start') open.set(e.worker, e)
    if (e.ev === 'end' && open.has(e.worker)) {
      out.push({ worker: e.worker, role: e.role, start: open.get(e.worker).t, end: e.t })
      open.delete(e.worker)
    }
  }
  for (const [w, s] of open) out.push({ worker: w, role: s.role, start: s.t, end: kills[w] ?? end, killed: w in kills })
  return out
}

/**
 * Sweeps the intervals in time order (an end before a start at the same
 * instant) and calls `visit(holding)` after every start, `holding` being the
 * intervals held at that instant; returns the most held at once.
 */
function sweep(list, visit = () => {}) {
  const points = list.flatMap((iv) => [{ t: iv.start, d: 1, iv }, { t: iv.end, d: -1, iv }])
  points.sort((a, b) => (a.t < b.t ? -1 : a.t > b.t ? 1 : a.d - b.d))
  const holding = new Set()
  let most = 0
  for (const p of points) {
    if (p.d < 0) holding.delete(p.iv)
    else {
      holding.add(p.iv)
      most = Math.max(most, holding.size)
      visit([...holding])
    }
  }
  return most
}

/**
 * Starts `count` workers; `options(i)` gives each its JSON options. Every
 * other worker makes its manager with LockManager.connect(uri), the rest
 * with new LockManager(collection): both ways take part in every checker.
 */
function startWorkers(mode, ctx, dir, count, durationMs, options = () => ({})) {
  return Array.from({ length: count }, (_, i) =>
    startNode(worker, [mode, ctx.name, dir, `w${i}`, String(durationMs), JSON.stringify({ ttlMs: TTL, refreshMs: REFRESH, via: i % 2 ? 'connect' : 'collection', ...options(i) })], {
      timeoutMs: durationMs + 40_000,
    }),
  )
}

/**
 * Kills, with SIGKILL, the first worker whose log says it holds something
 * (as `role`, if given); resolves to `{ killed, killedAt }`: its index and
 * the kill instant. Any worker will do: a writer's hold is short and one
 * worker may go a long while without one.
 */
async function killWhileHolding(dir, workers, role) {
  const holding = () => workers.findIndex((_, i) => {
    const file = path.join(dir, `w${i}.jsonl`)
    if (!existsSync(file)) return false
    const lines = readFileSync(file, 'utf8').trim().split('\n')
    const last = JSON.parse(lines[lines.length - 1])
    return last.ev === 'start' && (!role || last.role === role)
  })
  const found = await eventually(() => { const i = holding(); return i >= 0 ? { i } : null }, 15_000, 2)
  expect(found, `no worker held ${role ?? 'anything'}`).toBeTruthy()
  workers[found.i].child.kill('SIGKILL')
  return { killed: found.i, killedAt: mono() }
}

async function finished(workers) {
  const runs = await Promise.all(workers.map((w) => w.exited))
  return runs.map((r, i) => {
    if (r.signal === 'SIGKILL') return { killed: true }
    expect(r.code, `worker ${i}: ${r.stderr}`).toBe(0)
    return JSON.parse(r.stdout.trim().split('\n').pop())
  })
}

describe('primitives across processes', () => {
  let ctx
  let dir
  beforeEach(async () => {
    ctx = await freshCollection('primitives')
    dir = mkdtempSync(path.join(os.tmpdir(), 'mln-primitives-'))
  })
  afterEach(async () => {
    await ctx.close()
    rmSync(dir, { recursive: true, force: true })
  })

  it('semaphore: five processes, limit 3, a holder SIGKILLed: never more than 3 holders; the dead permit comes back after the ttl', async () => {
    const workers = startWorkers('semaphore', ctx, dir, 5, 10_000, () => ({ limit: 3 }))
    await sleep(2500)
    const { killed, killedAt } = await killWhileHolding(dir, workers)
    const results = await finished(workers)
    const survivors = results.filter((_, i) => i !== killed)
    const list = intervals(readLogs(dir), { [`w${killed}`]: killedAt })
    expect(sweep(list)).toBeLessThanOrEqual(3) // the guarantee
    expect(sweep(list)).toBe(3) // and the test really contended for every permit
    // After the killed holder's document expired, three holders again.
    const after = list.filter((iv) => ms(iv.start - killedAt) > TTL + REFRESH)
    expect(sweep(after)).toBe(3)
    expect(survivors.reduce((s, r) => s + r.sections, 0)).toBeGreaterThan(20)
    expect(survivors.every((r) => r.errors === 0)).toBe(true)
  }, 60_000)

  it('read/write lock: five processes, random readers and writers, a writer SIGKILLed: a writer is never with anyone', async () => {
    const workers = startWorkers('rwlock', ctx, dir, 5, 10_000)
    await sleep(2500)
    const { killed, killedAt } = await killWhileHolding(dir, workers, 'writer')
    const results = await finished(workers)
    const survivors = results.filter((_, i) => i !== killed)
    const list = intervals(readLogs(dir), { [`w${killed}`]: killedAt })
    const violations = []
    sweep(list, (holding) => {
      if (holding.some((iv) => iv.role === 'writer') && holding.length > 1) violations.push(holding)
    })
    expect(violations).toEqual([])
    expect(sweep(list.filter((iv) => iv.role === 'reader'))).toBeGreaterThanOrEqual(2) // readers did share
    expect(list.filter((iv) => iv.role === 'writer').length).toBeGreaterThan(5)
    expect(list.filter((iv) => iv.role === 'writer' && ms(iv.start - killedAt) > 0).length).toBeGreaterThan(0) // writers after the kill
    expect(survivors.every((r) => r.errors === 0)).toBe(true)
  }, 60_000)

  it('read/write lock: a writer is not starved by three processes reading back to back', async () => {
    const readers = startWorkers('rwlock', ctx, dir, 3, 8000, () => ({ writeShare: 0, readMs: [100, 300], pauseMs: [0, 5] }))
    const locker = new LockManager(ctx.collection, { logger: false, ttlMs: TTL, refreshMs: REFRESH })
    try {
      // The readers are reading back to back before the writer asks. Wait
      // for it rather than for a fixed time: three processes can take more
      // than 2 s to start on a loaded 2-core machine.
      const reading = () => readLogs(dir).filter((e) => e.ev === 'start').length > 3
      expect(await eventually(reading, 20_000, 50), 'the readers never got going').toBe(true)
      const asked = mono()
      const lock = await locker.readWriteLock('doc').write({ waitMs: 5000 })
      expect(lock, 'the writer waited out 5 s behind the readers').not.toBeNull()
      const own = path.join(dir, 'parent.jsonl')
      appendFileSync(own, JSON.stringify({ ev: 'start', role: 'writer', t: mono().toString() }) + '\n')
      await sleep(300)
      appendFileSync(own, JSON.stringify({ ev: 'end', role: 'writer', t: mono().toString() }) + '\n')
      await lock.free()
      // Readers hold 100–300 ms: the writer got in about one read later.
      expect(ms(mono() - asked)).toBeLessThan(5000)
      await finished(readers)
      const violations = []
      sweep(intervals(readLogs(dir)), (holding) => {
        if (holding.some((iv) => iv.role === 'writer') && holding.length > 1) violations.push(holding)
      })
      expect(violations).toEqual([])
    } finally {
      await locker.close()
    }
  }, 60_000)

  // Its own refresh interval, long enough that the bound is about the
  // library (after the expiry: a backoff step of at most 250 ms and a few
  // round trips), not about a loaded machine's scheduling.
  const ELECTION_REFRESH = 1000
  it(`election: four processes, the leader SIGKILLed: at most one leader at any instant, a new one within ttl + refreshMs (${TTL + ELECTION_REFRESH} ms)`, async () => {
    const workers = startWorkers('election', ctx, dir, 4, 10_000, () => ({ refreshMs: ELECTION_REFRESH }))
    const first = await Promise.any(workers.map((w) => w.waitFor('elected', 20_000)))
    await sleep(1500)
    const leader = workers.findIndex((w) => w.child.pid === first.pid)
    workers[leader].child.kill('SIGKILL')
    const killedAt = mono()
    const results = await finished(workers)
    const list = intervals(readLogs(dir), { [`w${leader}`]: killedAt })
    expect(sweep(list)).toBe(1)
    const next = list.filter((iv) => iv.worker !== `w${leader}` && iv.start > killedAt).sort((a, b) => (a.start < b.start ? -1 : 1))[0]
    expect(next, 'nobody was elected after the leader died').toBeDefined()
    expect(ms(next.start - killedAt)).toBeLessThanOrEqual(TTL + ELECTION_REFRESH)
    expect(results.filter((r) => !r.killed).every((r) => r.errors === 0)).toBe(true)
  }, 60_000)

  it('election: resign() hands over; leader() names the leader; stop() demotes with "stopped"', async () => {
    const a = new LockManager(ctx.collection, { logger: false, ttlMs: TTL, refreshMs: REFRESH })
    const b = new LockManager(ctx.collection, { logger: false, ttlMs: TTL, refreshMs: REFRESH })
    const log = []
    const elect = (locker, name) => locker.elect('scheduler', {
      onElected: (signal) => {
        log.push(`${name} elected`)
        signal.addEventListener('abort', () => log.push(`${name} signal aborted`), { once: true })
      },
      onDemoted: (reason) => log.push(`${name} demoted: ${reason}`),
    })
    const ea = elect(a, 'a')
    await eventually(() => ea.isLeader, 5000)
    const eb = elect(b, 'b')
    try {
      expect(ea.isLeader).toBe(true)
      const probe = await a.lock('probe') // a lock of a's names a's manager
      expect((await ea.leader()).manager).toBe(probe.holder.manager)
      await probe.free()
      await sleep(600)
      expect(eb.isLeader).toBe(false) // one leader
      await ea.resign()
      expect(ea.isLeader).toBe(false)
      await eventually(() => eb.isLeader, 5000)
      expect(eb.isLeader).toBe(true)
      const who = await eb.leader()
      expect(who.pid).toBe(process.pid)
      expect(log.slice(0, 4)).toEqual(['a elected', 'a signal aborted', 'a demoted: resigned', 'b elected'])
      await eb.stop()
      expect(log).toContain('b demoted: stopped')
      await eventually(() => ea.isLeader, 5000) // a campaigned again after its pause
      expect(ea.isLeader).toBe(true)
    } finally {
      await ea.stop()
      await eb.stop()
      await a.close()
      await b.close()
    }
  }, 30_000)

  // No waiter is passed over while permits keep being freed: with waitMs
  // long against typical holds, nobody gets null. 60 s in CI;
  // FAIRNESS_SECONDS shortens it for a quick run by hand.
  const FAIR_MS = Number(process.env.FAIRNESS_SECONDS ?? 60) * 1000
  const fairness = (results) => results
    .map((r, i) => `  w${i} (${r.via}): ${r.sections} grants, ${r.nulls} nulls, longest wait ${(r.longestWaitMs / 1000).toFixed(2)} s`)
    .join('\n')

  it(`semaphore: five processes on three permits for ${FAIR_MS / 1000} s, holds of 20–150 ms, waitMs 10 s: no acquire() returns null`, async () => {
    const workers = startWorkers('semaphore', ctx, dir, 5, FAIR_MS, () => ({ limit: 3, waitMs: 10_000, holdMs: [20, 150] }))
    const results = await finished(workers)
    console.log(`semaphore fairness, ${FAIR_MS / 1000} s:\n${fairness(results)}`)
    expect(results.map((r) => r.nulls), fairness(results)).toEqual([0, 0, 0, 0, 0])
    expect(results.every((r) => r.errors === 0 && r.sections > 0)).toBe(true)
    expect(sweep(intervals(readLogs(dir)))).toBeLessThanOrEqual(3)
  }, FAIR_MS + 90_000)

  const MIXED_MS = FAIR_MS / 2
  it(`read/write lock: five processes, 30% writers, for ${MIXED_MS / 1000} s, waitMs 10 s: no read() or write() returns null`, async () => {
    const workers = startWorkers('rwlock', ctx, dir, 5, MIXED_MS, () => ({ waitMs: 10_000 }))
    const results = await finished(workers)
    console.log(`read/write lock fairness, ${MIXED_MS / 1000} s:\n${fairness(results)}`)
    expect(results.map((r) => r.nulls), fairness(results)).toEqual([0, 0, 0, 0, 0])
    expect(results.every((r) => r.errors === 0 && r.sections > 0)).toBe(true)
  }, MIXED_MS + 90_000)

  it('minHoldMs: a job every 1 s on four skewed instances runs once per interval, even with one killed; without it, once per instance', async () => {
    const skews = [0, 90, 180, 270] // clock differences between hosts, in ms
    const run = async (minHoldMs, kill) => {
      const runDir = mkdtempSync(path.join(dir, 'run-'))
      const workers = startWorkers('minhold', ctx, runDir, 4, 7000, (i) => ({ intervalMs: 1000, minHoldMs, skewMs: skews[i] }))
      if (kill) {
        await sleep(3500)
        workers[1].child.kill('SIGKILL')
      }
      const results = await finished(workers)
      const runs = readLogs(runDir).filter((e) => e.ev === 'run')
      const perTick = new Map()
      for (const r of runs) perTick.set(r.tick, (perTick.get(r.tick) ?? 0) + 1)
      return { runs, perTick, results }
    }
    const once = await run(800, true)
    expect([...once.perTick.values()].every((n) => n === 1), JSON.stringify([...once.perTick])).toBe(true)
    expect(once.perTick.size).toBeGreaterThanOrEqual(5) // about one run per second for 7 s
    // Each run began at least minHoldMs after the attempt that got the run
    // before it (minHoldMs counts from the attempt: a slow reply to the
    // previous holder must not shorten the gap measured here).
    const gaps = once.runs.slice(1).map((r, i) => ms(r.t - BigInt(once.runs[i].asked)))
    expect(Math.min(...gaps), JSON.stringify(gaps)).toBeGreaterThanOrEqual(800)
    expect(once.results.filter((r) => !r.killed).every((r) => r.errors === 0)).toBe(true)
    // The control: the same schedule without minHoldMs runs the job on several instances per tick.
    const control = await run(undefined, false)
    expect(Math.max(...control.perTick.values())).toBeGreaterThan(1)
  }, 60_000)
})
