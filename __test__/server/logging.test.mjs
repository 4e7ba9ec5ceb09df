// The Rust core logs with tracing; a manager's events reach its `logger`
// (pino-style: logger[level](fields, message)). Silent without one.
import { describe, it, expect } from 'vitest'
import { freshCollection, lib, eventually, mongoUrl } from '../support/suite.mjs'
import { freePort } from '../support/ferretdb.mjs'

const { LockManager } = lib

function recorder() {
  const lines = []
  const logger = {}
  for (const level of ['debug', 'info', 'warn', 'error']) logger[level] = (fields, message) => lines.push({ level, message, fields })
  return { logger, lines }
}

describe('logging', () => {
  it('acquired and freed at debug, with the key as a plain string', async () => {
    const ctx = await freshCollection('log')
    const { logger, lines } = recorder()
    const m = new LockManager(ctx.collection, { logger })
    try {
      const lock = await m.lock('bank-details-42')
      await lock.free()
      await eventually(() => lines.some((l) => l.message === 'freed'), 2000)
      expect(lines).toContainEqual({ level: 'debug', message: 'acquired', fields: { action: 'bank-details-42', id: lock.id } })
      expect(lines).toContainEqual({ level: 'debug', message: 'freed', fields: { action: 'bank-details-42' } })
      const connected = lines.find((l) => l.message === 'connected')
      expect(typeof connected.fields.majority).toBe('boolean')
      expect(typeof connected.fields.clock_offset_ms).toBe('number')
    } finally {
      await m.close()
      await ctx.close()
    }
  })

  it('a takeover at warn, a lost lock at error', async () => {
    const ctx = await freshCollection('log')
    const { logger, lines } = recorder()
    const m = new LockManager(ctx.collection, { logger, ttlMs: 3000, refreshMs: 100 })
    try {
      const past = new Date(Date.now() - 1000)
      await ctx.collection.insertOne({ action: 'stale', createdAt: past, refreshedAt: past, expiresAt: past })
      const taken = await m.lock('stale')
      expect(taken).not.toBeNull()
      await ctx.collection.deleteOne({ action: 'stale' })
      await eventually(() => lines.some((l) => l.message === 'lock lost'), 3000)
      expect(lines).toContainEqual({ level: 'warn', message: 'took over an expired lock', fields: { action: 'stale' } })
      const lost = lines.find((l) => l.message === 'lock lost')
      expect(lost.level).toBe('error')
      expect(lost.fields.action).toBe('stale')
    } finally {
      await m.close()
      await ctx.close()
    }
  })

  it('a server without TTL indexes: said once per collection per process, at info (expected, and handled by takeover)', async () => {
    const ctx = await freshCollection('log')
    const { logger, lines } = recorder()
    const managers = [new LockManager(ctx.collection, { logger }), new LockManager(ctx.collection, { logger })]
    try {
      for (const m of managers) await (await m.lock(`a-${managers.indexOf(m)}`)).free()
      const ttl = (await ctx.collection.indexes()).some((i) => i.name === 'expiresAt_1')
      const said = lines.filter((l) => /no TTL indexes/.test(l.message))
      expect(said).toHaveLength(ttl ? 0 : 1)
      if (!ttl) expect(said[0].level).toBe('info')
      expect(lines.filter((l) => l.level === 'warn' || l.level === 'error')).toEqual([])
    } finally {
      for (const m of managers) await m.close()
      await ctx.close()
    }
  })

  it('a takeover of a document kept for its minHoldMs (a scheduled job\'s) at debug, not warn', async () => {
    const ctx = await freshCollection('log')
    const { logger, lines } = recorder()
    const m = new LockManager(ctx.collection, { logger })
    try {
      const first = await m.lock('nightly', { minHoldMs: 300 })
      await first.free() // kept until its minHoldMs
      expect(await m.lock('nightly')).toBeNull()
      const next = await eventually(() => m.lock('nightly'), 10_000, 100)
      expect(next).not.toBeNull()
      await next.free()
      expect(lines).toContainEqual({ level: 'debug', message: 'took over a lock kept for its minHoldMs', fields: { action: 'nightly' } })
      expect(lines.filter((l) => l.level === 'warn' || l.level === 'error')).toEqual([])
    } finally {
      await m.close()
      await ctx.close()
    }
  })

  it('server errors at error, and never the password of the connection string', async () => {
    const port = await freePort()
    const { logger, lines } = recorder()
    const uri = `mongodb://lockuser:s3cr3t-pw@127.0.0.1:${port}/?directConnection=true`
    const fake = { collectionName: 'c', dbName: 'd', client: { s: { url: uri } } }
    const m = new LockManager(fake, { logger, serverSelectionTimeoutMs: 300 })
    const err = await m.lock('k').catch((e) => e)
    expect(err.message).not.toContain('s3cr3t-pw')
    await eventually(() => lines.some((l) => l.level === 'error'), 2000)
    expect(JSON.stringify(lines)).not.toContain('s3cr3t-pw')
    expect(lines.some((l) => l.level === 'error' && /could not reach a MongoDB server/.test(l.message))).toBe(true)
    await m.close()
  })

  it('a logger that throws is ignored, and a bad logger is a TypeError', async () => {
    const ctx = await freshCollection('log')
    const thrower = { debug: () => { throw new Error('logger broke') }, warn: () => { throw new Error('logger broke') } }
    const m = new LockManager(ctx.collection, { logger: thrower })
    try {
      const lock = await m.lock('k')
      expect(await lock.free()).toBe(true)
      expect(() => new LockManager(ctx.collection, { logger: 'console' })).toThrow(/options.logger must be an object with debug\/info\/warn\/error methods/)
      expect(() => new LockManager(ctx.collection, { logger: {} })).toThrow(/it has none of them/)
    } finally {
      await m.close()
      await ctx.close()
    }
  })

  it('is silent with logger: false (nothing printed, not even the console default)', async () => {
    // A child process with logger: false prints nothing on stderr/stdout.
    const { runNode, root } = await import('../support/suite.mjs')
    const path = await import('node:path')
    const ctx = await freshCollection('log')
    try {
      const run = await runNode(path.join(root, '__test__', 'fixtures', 'close-and-exit.mjs'), [ctx.name, 'close', 'silent'])
      expect(run.code).toBe(0)
      expect(run.stderr).toBe('')
      expect(JSON.parse(run.stdout)).toEqual({ locked: [false, false, false] })
    } finally {
      await ctx.close()
    }
  })
})

describe('stats()', () => {
  it('counts held, acquired, contended, taken over, lost, refreshes and errors', async () => {
    const ctx = await freshCollection('stats')
    const m = new LockManager(ctx.collection, { ttlMs: 3000, refreshMs: 100 })
    try {
      expect(m.stats()).toEqual({ held: 0, acquired: 0, contended: 0, takenOver: 0, lost: 0, refreshes: 0, refreshCommands: 0, errors: 0, onceRuns: 0, onceReplays: 0, onceMismatches: 0, onceTakeovers: 0 })
      const a = await m.lock('a')
      const b = await m.lock('b')
      expect(await m.lock('a')).toBeNull()
      const past = new Date(Date.now() - 1000)
      await ctx.collection.insertOne({ action: 'old', createdAt: past, refreshedAt: past, expiresAt: past })
      const old = await m.lock('old')
      await ctx.collection.deleteOne({ action: 'b' })
      await eventually(() => !b.locked, 3000)
      await eventually(() => m.stats().refreshCommands >= 2, 3000)
      await a.free()
      const s = m.stats()
      expect(s).toMatchObject({ held: 1, acquired: 3, contended: 1, takenOver: 1, lost: 1, errors: 0 })
      expect(s.refreshes).toBeGreaterThanOrEqual(2)
      expect(s.refreshCommands).toBeGreaterThanOrEqual(2)
      await old.free()
    } finally {
      await m.close()
      await ctx.close()
    }
  })

  it('counts server errors', async () => {
    const port = await freePort()
    const fake = { collectionName: 'c', dbName: 'd', client: { s: { url: `mongodb://127.0.0.1:${port}/?directConnection=true` } } }
    const m = new LockManager(fake, { serverSelectionTimeoutMs: 200 })
    await m.lock('k').catch(() => {})
    expect(m.stats().errors).toBeGreaterThanOrEqual(1)
    await m.close()
    expect(mongoUrl()).toBeTruthy()
  })
})
