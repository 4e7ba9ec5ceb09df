// Exclusion across processes: several workers hammer the same keys with a
// non-atomic read-pause-write in the critical section. If two ever held a
// key at once, an update would be lost (the counters would fall short of
// the sections entered) and the holders count would have been seen above 1.
import { describe, it, expect, afterEach, beforeEach } from 'vitest'
import path from 'node:path'
import { freshCollection, runNode, root } from '../support/suite.mjs'

const hammer = path.join(root, '__test__', 'fixtures', 'hammer.mjs')

async function runWorkers(ctx, kinds, keys, iterations) {
  const runs = await Promise.all(kinds.map((kind) => runNode(hammer, [kind, ctx.name, String(keys), String(iterations)])))
  for (const r of runs) expect(r.code, r.stderr).toBe(0)
  const results = runs.map((r) => JSON.parse(r.stdout.trim().split('\n').pop()))
  const counters = ctx.db.collection(`${ctx.name}-counters`)
  const counted = (await counters.find({ _id: /^count-/ }).toArray()).reduce((sum, d) => sum + d.n, 0)
  await counters.drop().catch(() => {})
  return { results, counted }
}

describe('exclusion across processes', () => {
  let ctx
  beforeEach(async () => { ctx = await freshCollection('exclusion') })
  afterEach(async () => { await ctx.close() })

  it('four native processes on three keys never overlap and lose no update', async () => {
    const { results, counted } = await runWorkers(ctx, ['native', 'native', 'native', 'native'], 3, 60)
    const entered = results.reduce((s, r) => s + r.entered, 0)
    expect(results.every((r) => r.overlaps === 0)).toBe(true)
    expect(entered).toBeGreaterThan(0)
    expect(results.reduce((s, r) => s + r.contended, 0)).toBeGreaterThan(0) // they really contended
    expect(counted).toBe(entered)
    expect(await ctx.collection.countDocuments()).toBe(0) // every lock freed
  })

  it('stress: six processes (four native, two stock mongo-locks) on three keys: no overlap, no lost update', async () => {
    const { results, counted } = await runWorkers(ctx, ['native', 'stock', 'native', 'native', 'stock', 'native'], 3, 50)
    const entered = results.reduce((s, r) => s + r.entered, 0)
    expect(results.every((r) => r.overlaps === 0)).toBe(true)
    expect(results.filter((r) => r.kind === 'stock').reduce((s, r) => s + r.entered, 0)).toBeGreaterThan(0)
    expect(results.filter((r) => r.kind === 'native').reduce((s, r) => s + r.entered, 0)).toBeGreaterThan(0)
    expect(counted).toBe(entered)
  })
})
