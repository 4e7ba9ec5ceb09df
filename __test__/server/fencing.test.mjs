// Fencing tokens: lock(key, { fencing: true }) gives lock.fencingToken, a
// bigint strictly increasing per key across every holder in every process.
import { describe, it, expect } from 'vitest'
import path from 'node:path'
import { lib, useLocker, runNode, root } from '../support/suite.mjs'

describe('fencing tokens', () => {
  const t = useLocker('fencing')

  it('is a bigint, increasing from holder to holder of one key, independent per key', async () => {
    const a1 = await t.locker.lock('acct-1', { fencing: true })
    expect(typeof a1.fencingToken).toBe('bigint')
    await a1.free()
    const a2 = await t.locker.lock('acct-1', { fencing: true })
    expect(a2.fencingToken).toBeGreaterThan(a1.fencingToken)
    const b1 = await t.locker.lock('acct-2', { fencing: true })
    expect(b1.fencingToken).toBe(1n)
    const plain = await t.locker.lock('acct-3')
    expect(plain.fencingToken).toBeNull()
    const doc = await t.ctx.collection.findOne({ action: 'acct-1' })
    expect(BigInt(doc.fencingToken)).toBe(a2.fencingToken)
  })

  it('strictly increases across processes hammering one key', async () => {
    const script = path.join(root, '__test__', 'fixtures', 'fenced.mjs')
    const runs = await Promise.all([0, 1, 2].map(() => runNode(script, [t.ctx.name, 'fenced-key', '15'])))
    for (const r of runs) expect(r.code, r.stderr).toBe(0)
    const sections = runs.flatMap((r) => JSON.parse(r.stdout)).sort((a, b) => a.start - b.start)
    expect(sections).toHaveLength(45)
    for (let i = 1; i < sections.length; i++) {
      expect(BigInt(sections[i].token)).toBeGreaterThan(BigInt(sections[i - 1].token))
    }
  })

  it('lets storage refuse a stale holder with a conditional update (the documented pattern)', async () => {
    const accounts = t.ctx.db.collection(`${t.ctx.name}-accounts`)
    await accounts.insertOne({ _id: 'acct', balance: 0 })
    const write = (lock, balance) => accounts.updateOne(
      { _id: 'acct', $or: [{ fence: { $exists: false } }, { fence: { $lt: Number(lock.fencingToken) } }] },
      { $set: { balance, fence: Number(lock.fencingToken) } })
    const stale = await t.locker.lock('acct-fenced', { fencing: true })
    await t.ctx.collection.deleteOne({ action: 'acct-fenced' }) // stale's lock expired and was taken over
    const fresh = await t.locker.lock('acct-fenced', { fencing: true })
    expect((await write(fresh, 100)).modifiedCount).toBe(1)
    expect((await write(stale, 50)).modifiedCount).toBe(0) // the stale holder's write is refused
    expect((await accounts.findOne({ _id: 'acct' })).balance).toBe(100)
    await accounts.drop()
  })

  it('fencing must be a boolean', async () => {
    await expect(t.locker.lock('x', { fencing: 'yes' })).rejects.toThrow(/options.fencing must be true or false, got "yes"/)
  })
})
