// A service that starts before its database: the manager is created, and
// tries to connect, several seconds before the server exists. Its reading
// of the server's clock must not include that wait (a ping first, then
// timed samples on the warm connection), or it would think the server's
// clock seconds ahead and take over live locks. Runs its own FerretDB.
import { describe, it, expect, afterEach } from 'vitest'
import { MongoClient } from 'mongodb'
import { startFerretDB, freePort } from '../support/ferretdb.mjs'
import { lib, sleep } from '../support/suite.mjs'

const { LockManager } = lib
const options = { ttlMs: 4000, refreshMs: 600, serverSelectionTimeoutMs: 20_000 }

describe('a server that starts late', () => {
  const cleanup = []
  afterEach(async () => {
    for (const close of cleanup.splice(0).reverse()) await close().catch(() => {})
  })

  it('a manager created 6 s before the server reads its clock right and takes no live lock', async () => {
    const port = await freePort()
    const url = `mongodb://127.0.0.1:${port}/?directConnection=true`
    // The application's client exists (it has not connected: nothing to connect to).
    const appClient = new MongoClient(url)
    cleanup.push(() => appClient.close())
    const early = new LockManager(appClient.db('late').collection('mongo-locks'), options)
    cleanup.push(() => early.close())
    await sleep(6000)

    const server = await startFerretDB({ port })
    cleanup.push(() => server.stop())
    const holder = await LockManager.connect(server.url, { database: 'late', ...options })
    cleanup.push(() => holder.close())
    const held = await holder.lock('k')

    // A whole ttl of trying: with a clock reading off by the 6 s wait, it
    // would see the live lock as long expired.
    expect(await early.lock('k', { waitMs: 4500 })).toBeNull()
    expect(held.locked).toBe(true)
    expect(holder.stats().lost).toBe(0)
    // The server runs on this machine: its clock is ours.
    expect(Math.abs(early.serverClockOffsetMs)).toBeLessThan(100)
    expect(early.serverClockUncertaintyMs).toBeLessThan(100)
  })
})
