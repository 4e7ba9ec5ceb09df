// `unlock` against the real server: deleting a lock held by stock
// mongo-locks 3.2 or by this package (its holder learns of it), and refusing
// without --yes when there is no terminal to ask on.
import { describe, it, expect, beforeEach, afterEach } from 'vitest'
import { spawn } from 'node:child_process'
import os from 'node:os'
import { root, lib, mongoUrl, freshCollection, startNode, eventually } from '../support/suite.mjs'
import { stockLockManager } from '../support/stock-mongo-locks.mjs'
import { CLI, HOLDER, UNKNOWN, cli, oneErrorLine, holderText } from './cli-helpers.mjs'

describe('cli: unlock', () => {
  let ctx
  let managers
  let stockLocks
  beforeEach(async () => {
    ctx = await freshCollection('cli-unlock')
    managers = []
    stockLocks = []
  })
  afterEach(async () => {
    for (const l of stockLocks) l.locked = false
    for (const m of managers) await m.close()
    await ctx.close()
  })
  const manager = (options) => {
    const m = new lib.LockManager(ctx.collection, { logger: false, ...options })
    managers.push(m)
    return m
  }
  const stockLock = async (key) => {
    const { locker } = await stockLockManager(ctx.db, ctx.collection)
    const lock = await locker.lock(key)
    stockLocks.push(lock)
    return { locker, lock }
  }

  it('--force --yes deletes a lock held by stock mongo-locks; the key is free for another manager', async () => {
    const { lock } = await stockLock('bank-details-42')
    const id = lock._id.toHexString()
    const run = await cli(['unlock', 'bank-details-42', '--force', '--yes'], { target: ctx })
    expect(run.code, run.stderr).toBe(0)
    expect(run.stdout).toMatch(new RegExp(`^deleted lock key="bank-details-42" _id=${id} holder="${UNKNOWN.replace(/[()]/g, '\\$&')}" held_for=\\d+s in=${ctx.db.databaseName}\\.${ctx.name}\\n$`))
    expect(await ctx.collection.countDocuments()).toBe(0)
    // The stock holder finds out at its refresh; another manager gets the key now.
    expect(await lock.refresh()).toBe(false)
    const next = await manager().lock('bank-details-42')
    expect(next).not.toBeNull()
  })

  it('--force --yes deletes a lock held by this package: its holder loses it, another manager takes the key', async () => {
    const holder = manager({ ttlMs: 3000 }) // refreshes every 500 ms
    const held = await holder.lock(['org', 7], { fencing: true })
    const doc = await ctx.collection.findOne({})
    const run = await cli(['unlock', '--json-key', '["org",7]', '--force', '-y'], { target: ctx })
    expect(run.code, run.stderr).toBe(0)
    const line = run.stdout.trimEnd()
    expect(line.split('\n')).toHaveLength(1)
    expect(line).toContain(`key="json:[\\"org\\",7]" _id=${held.id} holder="${holderText(doc.holder)}"`)
    if (doc.holder) {
      expect(doc.holder.pid).toBe(process.pid)
      expect(line).toContain(` manager=${doc.holder.manager} `)
    }
    expect(await ctx.collection.countDocuments()).toBe(0)
    // The holder notices at its next refresh.
    expect(await eventually(() => held.signal.aborted, 5000)).toBe(true)
    expect(held.locked).toBe(false)
    // Stock mongo-locks takes the key next.
    const { lock: next } = await stockLock(['org', 7])
    expect(next).not.toBeNull()
  })

  it('a lock held by another process of this package: the holder shown is that process, and it learns of the unlock', async () => {
    const holder = startNode(HOLDER, ['--lib', 'ours', '--collection', ctx.name, '--key', 'report-2026-11', '--ttl-ms', '3000', '--app-name', 'report-worker'], {
      env: { MONGO_URL: mongoUrl() },
    })
    try {
      const locked = await holder.waitFor('locked')
      const doc = await ctx.collection.findOne({})
      const shown = await cli(['show', 'report-2026-11', '--json'], { target: ctx })
      expect(JSON.parse(shown.stdout).lock.holder).toEqual(doc.holder ?? null)
      if (doc.holder) expect(doc.holder).toMatchObject({ pid: locked.pid, app: 'report-worker', host: os.hostname() })
      const run = await cli(['unlock', 'report-2026-11', '--force', '--yes'], { target: ctx })
      expect(run.code, run.stderr).toBe(0)
      expect(run.stdout).toContain(`_id=${locked.id} holder="${holderText(doc.holder)}"`)
      const lost = await holder.waitFor('lost', 10_000)
      expect(lost.reason).toMatch(/report-2026-11/)
    } finally {
      holder.child.kill('SIGTERM')
      await holder.exited
    }
  })

  it('without --yes and without a terminal: refuses, exit 2, deletes nothing (stdin ignored or piped)', async () => {
    await manager().lock('payment-991')
    const ignored = await cli(['unlock', 'payment-991', '--force'], { target: ctx })
    // A "y" piped in is not a confirmation: there is nobody at a terminal.
    const piped = await new Promise((resolve) => {
      const child = spawn(process.execPath, [CLI, 'unlock', 'payment-991', '--force', '--db', ctx.db.databaseName, '--collection', ctx.name], {
        cwd: root,
        env: { ...process.env, MONGO_URL: mongoUrl() },
        stdio: ['pipe', 'pipe', 'pipe'],
      })
      let stdout = ''
      let stderr = ''
      child.stdout.on('data', (d) => { stdout += d })
      child.stderr.on('data', (d) => { stderr += d })
      child.stdin.end('y\n')
      child.on('exit', (code) => resolve({ code, stdout, stderr }))
    })
    for (const run of [ignored, piped]) {
      expect(run.code, run.stderr).toBe(2)
      expect(oneErrorLine(run)).toBe(
        'mongo-locks-native: not deleting the lock on payment-991: no terminal to confirm on (stdin is not a TTY); add --yes to delete without asking',
      )
      expect(run.stdout).toBe('')
    }
    const noForce = await cli(['unlock', 'payment-991', '--yes'], { target: ctx })
    expect(noForce.code).toBe(2)
    expect(await ctx.collection.countDocuments({ action: 'payment-991' })).toBe(1)
  })

  it('unlock of a key nobody holds: exit 3', async () => {
    await manager().ready
    const run = await cli(['unlock', 'nobody-holds-this', '--force', '--yes'], { target: ctx })
    expect(run.code).toBe(3)
    expect(oneErrorLine(run)).toMatch(/no lock on nobody-holds-this in /)
  })
})
