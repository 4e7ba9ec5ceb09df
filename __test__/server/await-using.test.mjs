// `await using` frees the lock through Symbol.asyncDispose: run for real on
// Node 24 (from the `node` npm package), where it is native syntax.
import { describe, it, expect, afterEach, beforeEach } from 'vitest'
import path from 'node:path'
import { freshCollection, runNode, root, node24 } from '../support/suite.mjs'

describe('await using (Node 24)', () => {
  let ctx
  beforeEach(async () => { ctx = await freshCollection('using') })
  afterEach(async () => { await ctx.close() })

  it('frees the lock at the end of the block, on return and on throw; skips a null lock', async () => {
    const run = await runNode(path.join(root, '__test__', 'fixtures', 'await-using.mjs'), [ctx.name], { node: node24 })
    expect(run.code, run.stderr).toBe(0)
    const seen = JSON.parse(run.stdout)
    expect(seen.node).toMatch(/^v24\./)
    expect(seen).toMatchObject({
      insideLocked: true,
      insideDocs: 1,
      insideOther: null,
      afterLocked: false,
      afterDocs: 0,
      throwInsideLocked: true,
      thrown: 'boom',
      afterThrowDocs: 0,
      busy: null,
      usingLocked: true,
      usingAfter: 0,
    })
  })
})
