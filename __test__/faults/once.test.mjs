// once() when the process running fn dies or freezes: its record is taken
// over one ttl after its last refresh by another process's call, whose run
// gets a higher fencing token and whose result every later call replays;
// a run paused past the ttl learns of its loss through its signal, and its
// completion is refused (LockLostError), so only the taker's result counts.
import { describe, it, expect, afterEach, beforeEach } from 'vitest'
import path from 'node:path'
import { randomUUID } from 'node:crypto'
import { freshCollection, lib, runNode, startNode, root, sleep, eventually } from '../support/suite.mjs'

const fixture = path.join(root, '__test__', 'fixtures', 'once-run.mjs')
const monotonicMs = () => Number(process.hrtime.bigint() / 1000n) / 1000
/** A run's value as the fixture prints it (JSON: the bigint token as a string). */
const printed = (value) => ({ ...value, fencingToken: String(value.fencingToken) })
const neverRuns = () => { throw new Error('fn ran: the stored result was not replayed') }

describe('once() when the running process dies or is paused', () => {
  let ctx
  beforeEach(async () => { ctx = await freshCollection('once-faults') })
  afterEach(async () => { await ctx.close() })

  it('a run SIGKILLed mid-fn: another process runs the key within ttl + one refresh interval of the last refresh, with a higher token, and its result is replayed everywhere', async () => {
    // The ttl and refresh interval of takeover.test.mjs, for the same
    // reason: the bound is about the library, not a loaded machine.
    const [ttl, refresh] = [2000, 1000]
    const key = `charge-${randomUUID()}`
    const child = startNode(fixture, [ctx.name, key, String(ttl), String(refresh), '60000'])
    const taker = new lib.LockManager(ctx.collection, { ttlMs: ttl, refreshMs: refresh })
    try {
      const running = await child.waitFor('running')
      // Refreshed at least once before it dies (a loaded machine may refresh late).
      const refreshed = await eventually(async () => {
        const doc = await ctx.collection.findOne({ action: { _once: key } })
        return doc && doc.refreshedAt > doc.createdAt && doc
      })
      expect(refreshed, 'the running record was never refreshed').toBeTruthy()
      await sleep(Math.floor(Math.random() * refresh)) // die at some point between refreshes
      child.child.kill('SIGKILL')
      expect((await child.exited).signal).toBe('SIGKILL')
      const { refreshedAt, holder } = await ctx.collection.findOne({ action: { _once: key } })
      expect(holder).toBeTruthy() // still a running record: nothing finished it

      let startedAt
      const value = await taker.once(key, async ({ fencingToken }) => {
        startedAt = Date.now()
        return { by: 'taker', fencingToken, nonce: randomUUID() }
      }, { waitMs: 10_000 })
      expect(value.by).toBe('taker')
      const sinceLastRefresh = startedAt - refreshedAt.getTime()
      expect(sinceLastRefresh).toBeGreaterThanOrEqual(ttl)
      expect(sinceLastRefresh).toBeLessThanOrEqual(ttl + refresh)
      expect(value.fencingToken).toBeGreaterThan(BigInt(running.fencingToken))
      expect(taker.stats()).toMatchObject({ onceRuns: 1, onceTakeovers: 1 })

      // Replayed, in this process and in a new one, whose fn never runs.
      expect(await taker.once(key, neverRuns)).toEqual(value)
      const again = await runNode(fixture, [ctx.name, key, String(ttl), String(refresh), '0'])
      expect(again.code, again.stderr).toBe(0)
      const events = again.stdout.trim().split('\n').map((l) => JSON.parse(l))
      expect(events.map((e) => e.event)).toEqual(['result', 'replay'])
      expect(events[0].value).toEqual(printed(value))
      expect(events[1].value).toEqual(printed(value))
      const record = await taker.inspectOnce(key)
      // inspectOnce() gives tokens as numbers, as inspect() does.
      expect(record).toMatchObject({ state: 'completed', fencingToken: Number(value.fencingToken) })
    } finally {
      child.child.kill('SIGKILL')
      await taker.close()
    }
  })

  it('a run paused past its ttl: taken over meanwhile; on resuming its signal has aborted, its completion is refused, and both processes replay the taker\'s result', async () => {
    // The ttl of pause.test.mjs: a refresh delayed by a loaded machine must
    // not end the run before the pause.
    const ttl = 4000
    const pause = ttl + 1500
    const key = `export-${randomUUID()}`
    const child = startNode(fixture, [ctx.name, key, String(ttl), 'default', String(300 + pause + 1500)])
    const taker = new lib.LockManager(ctx.collection, { ttlMs: ttl })
    try {
      const running = await child.waitFor('running')
      await sleep(300)
      child.child.kill('SIGSTOP')
      const stoppedAt = monotonicMs()
      let takenAt
      let value
      try {
        value = await taker.once(key, async ({ fencingToken, signal }) => {
          takenAt = monotonicMs()
          expect(signal.aborted).toBe(false)
          return { by: 'taker', fencingToken, nonce: randomUUID() }
        }, { waitMs: pause })
      } finally {
        await sleep(Math.max(0, stoppedAt + pause - monotonicMs()))
        child.child.kill('SIGCONT')
      }
      expect(value.by).toBe('taker')
      expect(value.fencingToken).toBeGreaterThan(BigInt(running.fencingToken))
      expect(taker.stats()).toMatchObject({ onceRuns: 1, onceTakeovers: 1 })

      const result = await child.waitFor('result', 20_000)
      const replay = await child.waitFor('replay', 20_000)
      const exited = await child.exited
      expect(exited.code, exited.stderr).toBe(0)
      // Its completion was refused: LockLostError carrying what it returned.
      expect(result.value).toBeUndefined()
      expect(result.error).toMatchObject({ name: 'LockLostError', result: { by: 'child', fencingToken: running.fencingToken } })
      // Its signal said so: not aborted before the pause, aborted at every
      // read after it, and its last belief of holding the record came before
      // the taker's run began.
      const { reads } = result
      const gap = reads.findIndex(([at], i) => i > 0 && at - reads[i - 1][0] > 1000)
      expect(gap).toBeGreaterThan(0) // the pause is in the record
      expect(reads.slice(0, gap).every(([, aborted]) => !aborted)).toBe(true)
      // fn's only way to know is its signal: a read of false after the
      // pause would let it act while the taker runs (reads: [monotonic ms, aborted]).
      const around = JSON.stringify({ takenAt, reads: reads.slice(gap - 1, gap + 5) })
      expect(reads.slice(gap).every(([, aborted]) => aborted), around).toBe(true)
      expect(reads[gap - 1][0]).toBeLessThan(takenAt)
      expect(result.abortedAtEnd).toBe(true)
      // Both processes replay the taker's result.
      expect(replay.value).toEqual(printed(value))
      expect(await taker.once(key, neverRuns)).toEqual(value)
      expect(await taker.inspectOnce(key)).toMatchObject({ state: 'completed', fencingToken: Number(value.fencingToken) })
    } finally {
      child.child.kill('SIGCONT')
      child.child.kill('SIGKILL')
      await taker.close()
    }
  })
})
