// Refresh that keeps locks alive while the server answers: one small
// command per round however many locks a manager holds, each round bounded
// by the time its locks have left and not waiting for the one before, so a
// slow server (seconds per round trip, a few KB/s) still keeps them, and
// nobody else gets their keys meanwhile.
//
// On FerretDB's PostgreSQL backend (its SQLite one reads every document of
// the collection for each filter and takes about a second to update a
// thousand: the server, not the manager, would be what is measured).
import { it, expect, beforeAll, afterAll, beforeEach, afterEach } from 'vitest'
import { MongoClient } from 'mongodb'
import { startFerretDB } from '../support/ferretdb.mjs'
import { startPostgres, postgresBin } from '../support/postgres.mjs'
import { startToxiproxy } from '../support/toxiproxy.mjs'
import { lib, sleep, describeWithTool, usePrivateServer } from '../support/suite.mjs'

const { LockManager } = lib
// The machine's PostgreSQL (Debian's postgresql package).
const describe = describeWithTool(import.meta.url, 'a slow server keeps thousands of held locks, one refresh command a round', {
  tool: 'PostgreSQL',
  found: Boolean(postgresBin()),
  install: 'apt-get install postgresql',
})

/** `n` keys locked by `locker`, 100 at a time. */
async function lockMany(locker, n, prefix = 'k') {
  const locks = []
  for (let i = 0; i < n; i += 100) {
    const batch = await Promise.all(Array.from({ length: Math.min(100, n - i) }, (_, j) => locker.lock(`${prefix}-${i + j}`)))
    locks.push(...batch)
  }
  for (const lock of locks) expect(lock).not.toBeNull()
  return locks
}

describe('refresh: one command per round, whatever the number of held locks', () => {
  const t = usePrivateServer({ postgresql: true })

  it('2,500 held locks (ids for three commands of 1,000): each round is one update, and it refreshes them all', async () => {
    const locker = new LockManager(t.client.db('refresh').collection('one-command'), { ttlMs: 6000, logger: false })
    try {
      const locks = await lockMany(locker, 2500)
      const before = locker.stats()
      const { sent } = await t.commandsSent(() => sleep(4500))
      const after = locker.stats()
      const rounds = after.refreshCommands - before.refreshCommands
      expect(rounds).toBeGreaterThanOrEqual(3) // every 1 s (ttl / 6)
      // One update per round (none else is sent: ids in batches of 1,000
      // made two), and each round matched all. A round under way at either
      // end of the window is counted by one side only.
      expect(sent('update')).toBeLessThanOrEqual(rounds + 1)
      expect(sent('update')).toBeGreaterThanOrEqual(rounds - 1)
      expect(after.refreshes - before.refreshes).toBe(rounds * 2500)
      expect(locks.every((l) => l.locked)).toBe(true)
    } finally {
      await locker.close()
    }
  }, 120_000)

  it('what a round must leave alone stays alone: a freed lock kept for its minHoldMs, a lock past its maxHoldMs', async () => {
    const collection = t.client.db('refresh').collection('leave-alone')
    const locker = new LockManager(collection, { ttlMs: 3000, logger: false })
    try {
      const held = await locker.lock('held')
      const kept = await locker.lock('kept', { minHoldMs: 1500 })
      await kept.free() // its document stays, expiring at its minHoldMs
      const capped = await locker.lock('capped', { maxHoldMs: 500 })
      const expiry = async (action) => (await collection.findOne({ action }))?.expiresAt?.getTime()
      const keptUntil = await expiry('kept')
      await sleep(1200) // two rounds after the cap
      const cappedUntil = await expiry('capped')
      await sleep(1200) // two more rounds
      expect(await expiry('kept')).toBe(keptUntil) // not refreshed after its free
      expect(await expiry('capped')).toBe(cappedUntil) // not refreshed past maxHoldMs
      const heldUntil = await expiry('held')
      await sleep(1200)
      expect(await expiry('held')).toBeGreaterThan(heldUntil) // while the held one is
      expect(held.locked).toBe(true)
    } finally {
      await locker.close()
    }
  }, 60_000)
})

describe('a slow server keeps its holder\'s locks (Toxiproxy)', () => {
  // Longer or larger runs: MONGO_LOCKS_SOAK_HELD=10000 MONGO_LOCKS_SOAK_MS=180000.
  const HELD = Number(process.env.MONGO_LOCKS_SOAK_HELD) || 3000
  const TTL = 10_000
  /** Two ttls: every lock would be lost twice over if its refresh did not land. */
  const WINDOW = Number(process.env.MONGO_LOCKS_SOAK_MS) || 2 * TTL
  let postgres
  let server
  let toxiproxy
  let proxy
  let client
  let holder
  let other
  let locks
  let primitives
  let round = 0
  beforeAll(async () => {
    postgres = await startPostgres()
    server = await startFerretDB({ postgresql: postgres.url })
    toxiproxy = await startToxiproxy()
    proxy = await toxiproxy.proxy('mongo', server.port)
    client = await MongoClient.connect(server.url)
  }, 60_000)
  // Each scenario on its own collection, its holder taking the locks
  // before any fault.
  beforeEach(async () => {
    const collection = client.db('refresh').collection(`slow-${round++}`)
    holder = new LockManager(collection, { uri: `mongodb://127.0.0.1:${proxy.port}/?directConnection=true`, ttlMs: TTL, logger: false })
    other = new LockManager(collection, { logger: false })
    locks = await lockMany(holder, HELD)
    // Semaphore permits and read/write locks are documents of the same
    // collection, refreshed by the same rounds: a full semaphore, a write
    // lock and a full set of readers, which the other manager tries too.
    primitives = await holdPrimitives(holder)
  }, 300_000)
  afterEach(async () => {
    await proxy.clearToxics()
    await holder?.close().catch(() => {})
    await other?.close().catch(() => {})
  }, 60_000)
  afterAll(async () => {
    await client?.close()
    await toxiproxy?.stop()
    await server?.stop()
    await postgres?.stop()
  })

  /** A full semaphore, a write lock and a full set of readers, taken by `m`. */
  async function holdPrimitives(m) {
    const held = {
      permits: await Promise.all([0, 1, 2].map(() => m.semaphore('sem', { limit: 3 }).acquire())),
      write: await m.readWriteLock('rw-written').write(),
      readers: await Promise.all([0, 1].map(() => m.readWriteLock('rw-read', { maxReaders: 2 }).read())),
    }
    expect([...held.permits, held.write, ...held.readers].every(Boolean)).toBe(true)
    return held
  }

  /** What the other manager tries of the primitives: each must be refused while they are held. */
  const primitiveTries = () => [
    ['a fourth permit of the full semaphore', () => other.semaphore('sem', { limit: 3 }).acquire(), primitives.permits],
    ['a read of the write-locked key', () => other.readWriteLock('rw-written').read(), [primitives.write]],
    ['a third reader of the full read lock', () => other.readWriteLock('rw-read', { maxReaders: 2 }).read(), primitives.readers],
    ['a write of the read-locked key', () => other.readWriteLock('rw-read', { maxReaders: 2 }).write(), primitives.readers],
  ]

  /**
   * For `ms`, another manager (straight to the server) tries held keys and
   * the held primitives every 500 ms: it must never get one (two holders,
   * if its holder still believes it holds it; a lost lock, if not), and the
   * holder must keep them all.
   */
  async function keepsThemFor(ms) {
    const until = Date.now() + ms
    let tries = 0
    while (Date.now() < until) {
      const i = Math.floor(Math.random() * HELD)
      const taken = await other.lock(`k-${i}`)
      if (taken) {
        const twoHolders = locks[i].locked
        await taken.free()
        expect.fail(twoHolders ? `two holders of k-${i}` : `k-${i} was lost by its holder while the server answered, and taken`)
      }
      const [what, attempt, heldBy] = primitiveTries()[tries % 4]
      const got = await attempt()
      if (got) {
        const twoHolders = heldBy.every((l) => l.locked)
        await got.free()
        expect.fail(twoHolders ? `${what} was granted while its holder held it` : `${what} was granted: its holder lost it while the server answered`)
      }
      tries++
      await sleep(500)
    }
    const lost = locks.filter((l) => !l.locked).length
    expect(lost, `${lost} of ${HELD} held locks lost`).toBe(0)
    const all = [...primitives.permits, primitives.write, ...primitives.readers]
    expect(all.filter((l) => !l.locked).length, 'semaphore permits and read/write locks lost').toBe(0)
    return tries
  }

  it(`a 3 s round trip (1.5 s latency each way) on a ${TTL / 1000} s ttl: all ${HELD} locks kept for ${WINDOW / 1000} s, none taken`, async () => {
    await proxy.addToxic('latency', { latency: 1500 }, { stream: 'downstream', name: 'down' })
    await proxy.addToxic('latency', { latency: 1500 }, { stream: 'upstream', name: 'up' })
    expect(await keepsThemFor(WINDOW)).toBeGreaterThan(WINDOW / 1000)
  }, 600_000)

  it(`a fifth of the connections hang (their commands never answered): all ${HELD} locks kept for ${WINDOW / 1000} s, none taken`, async () => {
    // Toxiproxy's timeout toxic with toxicity 0.2: each connection, old or
    // new, has a one-in-five chance of passing nothing at all. A round sent
    // on one hangs until the time its locks have left is up; the next rounds
    // do not wait for it. (Locks are lost only if every round that fits in
    // a ttl hangs: six in a row, about one chance in 15,000 per round.)
    await proxy.addToxic('timeout', { timeout: 0 }, { stream: 'upstream', toxicity: 0.2, name: 'hang' })
    expect(await keepsThemFor(WINDOW)).toBeGreaterThan(WINDOW / 1000)
  }, 600_000)

  it(`2 KB/s each way: all ${HELD} locks kept for ${WINDOW / 1000} s, none taken`, async () => {
    await proxy.addToxic('bandwidth', { rate: 2 }, { stream: 'downstream', name: 'down' })
    await proxy.addToxic('bandwidth', { rate: 2 }, { stream: 'upstream', name: 'up' })
    expect(await keepsThemFor(WINDOW)).toBeGreaterThan(WINDOW / 1000)
  }, 600_000)
})
