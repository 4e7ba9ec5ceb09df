// One collection, stock mongo-locks 3.2 in one manager and ours in another:
// each sees the other's locks, both ways, for every key form.
// On FerretDB, stock mongo-locks gets a collection whose createIndexes leaves
// out the TTL index (FerretDB refuses it, and mongo-locks cannot cope with
// the refusal): see __test__/support/stock-mongo-locks.mjs. Its lock path is stock.
import { describe, it, expect, afterEach, beforeEach } from 'vitest'
import { freshCollection, lib } from '../support/suite.mjs'
import { stockLockManager } from '../support/stock-mongo-locks.mjs'

describe('interop with stock mongo-locks', () => {
  let ctx
  let ours
  let stock
  beforeEach(async () => {
    ctx = await freshCollection('interop')
    ours = new lib.LockManager(ctx.collection)
    stock = (await stockLockManager(ctx.db, ctx.collection)).locker
  })
  afterEach(async () => {
    await ours.close()
    await ctx.close()
  })

  for (const key of ['bank-details-42', 42, ['org', 7], { org: 'x', kind: 'payment' }]) {
    it(`a key held by mongo-locks is refused to us, and the reverse (${JSON.stringify(key)})`, async () => {
      const theirs = await stock.lock(key)
      expect(theirs).not.toBeNull()
      expect(await ours.lock(key)).toBeNull()
      expect(await theirs.free()).toBe(true)

      const mine = await ours.lock(key)
      expect(mine).not.toBeNull()
      expect(await stock.lock(key)).toBeNull()
      expect(mine.action).toEqual(theirs.action)
      expect(await mine.free()).toBe(true)
      expect(await ctx.collection.countDocuments()).toBe(0)
    })
  }

  it('our documents and indexes are what mongo-locks writes (a shared collection needs no migration)', async () => {
    const theirs = await stock.lock('shape')
    const theirDoc = await ctx.collection.findOne({ action: 'shape' })
    await theirs.free()
    const mine = await ours.lock('shape')
    const myDoc = await ctx.collection.findOne({ action: 'shape' })
    await mine.free()
    // mongo-locks' fields, in its order, plus only `holder` (who holds it):
    // extra fields, which mongo-locks ignores.
    expect(Object.keys(myDoc)).toEqual([...Object.keys(theirDoc), 'holder'])
    for (const field of ['createdAt', 'refreshedAt', 'expiresAt']) expect(myDoc[field]).toBeInstanceOf(Date)
    expect(myDoc.expiresAt - myDoc.createdAt).toBe(theirDoc.expiresAt - theirDoc.createdAt)
    const indexNames = (await ctx.collection.indexes()).map((i) => i.name).sort()
    expect(indexNames).toContain('action_1')
  })

  it('a lock freed by its holder is free for the other library at once', async () => {
    const mine = await ours.lock('handover')
    const waiting = await stock.lock('handover')
    expect(waiting).toBeNull()
    await mine.free()
    const theirs = await stock.lock('handover')
    expect(theirs).not.toBeNull()
    await theirs.free()
  })
})
