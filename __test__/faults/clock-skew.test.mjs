// Expiry is judged by the server's clock, not the client's. Child processes
// run under faketime with their clock off by 1.9 s (under half the 4 s ttl),
// either way; the server (and this test) run on the true clock.
import { it, expect } from 'vitest'
import path from 'node:path'
import { useLocker, runNode, root, faketimeLibrary, describeWithFaketime } from '../support/suite.mjs'

const TTL = 4000
const SKEW = 1900
const script = path.join(root, '__test__', 'fixtures', 'skewed.mjs')

/**
 * `node skewed.mjs …` with its clock off by `skewMs`: libfaketime preloaded
 * with FAKETIME="+1.9s" (as `faketime -f +1.9s node …` would), its
 * monotonic clocks left alone.
 */
function skewed(skewMs, args) {
  const offset = `${skewMs >= 0 ? '+' : '-'}${Math.abs(skewMs) / 1000}s`
  return runNode(script, args, {
    env: { LD_PRELOAD: faketimeLibrary(), FAKETIME: offset, FAKETIME_DONT_FAKE_MONOTONIC: '1' },
  })
}

// libfaketime: scripts/install-faketime.sh puts it in .tools (.ci/run runs
// it), or the system's. CI must run these tests; without it elsewhere, one
// skipped test says what is not checked.
const guarantee = 'expiry by the server\'s clock: a client whose clock is off by ±1.9 s neither takes a lock early nor holds it past its expiry'
describeWithFaketime(import.meta.url, guarantee)('clock skew (faketime, ±1.9 s on a 4 s ttl)', () => {
  const t = useLocker('skew', { ttlMs: TTL })

  it('a client 1.9 s ahead does not take over a crashed holder\'s lock before it expires on the server', async () => {
    // The crashed holder's document: expires 3 s from now in server time.
    const expiresAt = new Date(Date.now() + 3000)
    await t.ctx.collection.insertOne({ action: 'crashed', createdAt: new Date(), refreshedAt: new Date(), expiresAt })
    const run = await skewed(+SKEW, ['take', t.ctx.name, 'crashed', String(TTL)])
    expect(run.code, run.stderr).toBe(0)
    const out = JSON.parse(run.stdout)
    expect(out.acquired).toBe(true)
    expect(out.offsetMs).toBeGreaterThan(-SKEW - 300) // it measured the server ~1.9 s behind it
    expect(out.offsetMs).toBeLessThan(-SKEW + 300)
    const acquiredTrueTime = out.acquiredAt - SKEW
    expect(acquiredTrueTime).toBeGreaterThanOrEqual(expiresAt.getTime()) // a client-clock library takes it ~1.9 s early
  })

  it('a client 1.9 s behind gives its lock up (lost signal) before it expires on the server', async () => {
    const run = await skewed(-SKEW, ['hold', t.ctx.name, 'held-by-late-clock', String(TTL)])
    expect(run.code, run.stderr).toBe(0)
    const out = JSON.parse(run.stdout)
    expect(out.acquired).toBe(true)
    expect(out.offsetMs).toBeGreaterThan(SKEW - 300)
    expect(out.offsetMs).toBeLessThan(SKEW + 300)
    // The expiry it wrote, in server time, is in the document (nobody took it yet).
    const doc = await t.ctx.collection.findOne({ action: 'held-by-late-clock' })
    // The last instant it read `locked` as true, in true time, came before.
    expect(out.lastLockedAt).toBeGreaterThanOrEqual(out.acquiredAt)
    if (doc) expect(out.lastLockedAt + SKEW).toBeLessThanOrEqual(doc.expiresAt.getTime())
    // And it did not give up absurdly early either: about one ttl after taking it.
    expect(out.lostAt - out.acquiredAt).toBeGreaterThan(TTL - 500)
    // Written in server time: about one ttl after it was taken, by the true clock.
    if (doc) expect(Math.abs(doc.expiresAt.getTime() - (out.acquiredAt + SKEW) - TTL)).toBeLessThan(500)
  })

  it('our own expiry arithmetic agrees with a skewed client\'s: no two holders', async () => {
    // A skewed-ahead waiter and an unskewed holder that stops refreshing.
    const lock = await t.locker.lock('shared', { maxHoldMs: 1 })
    const expiresAt = (await t.ctx.collection.findOne({ action: 'shared' })).expiresAt.getTime()
    // The last instant `locked` read true here (the abort event itself may
    // run late on a busy event loop; what code acts on is `locked`).
    let lastLockedAt = Date.now()
    const sampler = setInterval(() => { if (lock.locked) lastLockedAt = Date.now() }, 2)
    const run = await skewed(+SKEW, ['take', t.ctx.name, 'shared', String(TTL)])
    clearInterval(sampler)
    expect(run.code, run.stderr).toBe(0)
    const out = JSON.parse(run.stdout)
    expect(out.acquired).toBe(true)
    expect(lock.locked).toBe(false)
    expect(lastLockedAt).toBeLessThanOrEqual(out.acquiredAt - SKEW) // we let go before they took it
    expect(out.acquiredAt - SKEW).toBeGreaterThanOrEqual(expiresAt)
  })
})
