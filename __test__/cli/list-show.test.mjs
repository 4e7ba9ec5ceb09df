// `list` and `show` (bin/mongo-locks-native.js) run as a child process
// against the real server, on documents written by the real libraries: this
// package's LockManager and stock mongo-locks 3.2 on the same collection,
// a holder-bearing document and an expired one.
import { describe, it, expect, beforeEach, afterEach } from 'vitest'
import { lib, mongoUrl, freshCollection, runNode } from '../support/suite.mjs'
import { stockLockManager } from '../support/stock-mongo-locks.mjs'
import { CLI, UNKNOWN, cli, oneErrorLine, holderDoc, BILLING, holderText } from './cli-helpers.mjs'

describe('cli: list and show', () => {
  let ctx
  let ours
  let stockLocks
  beforeEach(async () => {
    ctx = await freshCollection('cli')
    ours = new lib.LockManager(ctx.collection, { logger: false })
    stockLocks = []
  })
  afterEach(async () => {
    for (const l of stockLocks) await l.free().catch(() => {})
    await ours.close()
    await ctx.close()
  })

  /** Locks by both libraries, a holder-bearing document and an expired one; resolves to the documents by key. */
  async function populate() {
    const fenced = await ours.lock('payment-991', { fencing: true })
    const arrayKey = await ours.lock(['org', 7])
    const { locker: stock } = await stockLockManager(ctx.db, ctx.collection)
    const theirs = await stock.lock('bank-details-42')
    stockLocks.push(theirs)
    // A lock by this package on another machine, written in its exact shape
    // (holder included), and one whose holder died (FerretDB has no TTL monitor).
    await ctx.collection.insertOne(holderDoc('invoice-7', { createdAgoMs: 185_000, refreshedAgoMs: 8000, expiresInMs: 52_000, fencingToken: 17, holder: BILLING }))
    await ctx.collection.insertOne(holderDoc('job-10', { createdAgoMs: 600_000, refreshedAgoMs: 64_000, expiresInMs: -4000 }))
    expect([fenced, arrayKey, theirs].every(Boolean)).toBe(true)
    const docs = await ctx.collection.find().toArray()
    const byKey = Object.fromEntries(docs.map((d) => [typeof d.action === 'string' ? d.action : JSON.stringify(d.action._key_array), d]))
    return { docs, byKey, fenced }
  }

  it('list --json: every lock, sorted by key, as its document says, timed on the server clock', async () => {
    const { docs, byKey, fenced } = await populate()
    const run = await cli(['list', '--json'], { target: ctx })
    expect(run.code, run.stderr).toBe(0)
    const out = JSON.parse(run.stdout)
    expect(out).toMatchObject({ database: ctx.db.databaseName, collection: ctx.name, clock: 'server' })
    const serverTime = Date.parse(out.serverTime)
    expect(Math.abs(serverTime - Date.now())).toBeLessThan(10_000) // same machine
    expect(out.locks).toHaveLength(docs.length)
    // Sorted by key (the array key shows as its JSON).
    const stringKeys = out.locks.map((l) => l.key).filter((k) => typeof k === 'string')
    expect(stringKeys).toEqual(['bank-details-42', 'invoice-7', 'job-10', 'payment-991'])
    for (const lock of out.locks) {
      const doc = docs.find((d) => d._id.toHexString() === lock._id)
      expect(doc, lock._id).toBeDefined()
      expect(lock.action).toEqual(doc.action)
      expect(lock.createdAt).toBe(doc.createdAt.toISOString())
      expect(lock.refreshedAt).toBe(doc.refreshedAt.toISOString())
      expect(lock.expiresAt).toBe(doc.expiresAt.toISOString())
      expect(lock.heldForMs).toBe(serverTime - doc.createdAt.getTime())
      expect(lock.expiresInMs).toBe(doc.expiresAt.getTime() - serverTime)
      expect(lock.expired).toBe(lock.expiresInMs <= 0)
      expect(lock.holder).toEqual(doc.holder ?? null)
      expect(lock.fencingToken).toBe(doc.fencingToken ?? null)
    }
    const get = (key) => out.locks.find((l) => JSON.stringify(l.key) === JSON.stringify(key))
    // Stock mongo-locks writes no holder.
    expect(get('bank-details-42').holder).toBeNull()
    // Ours: the fencing token the lock was given; the array key unwrapped, stored wrapped.
    expect(get('payment-991').fencingToken).toBe(Number(fenced.fencingToken))
    expect(get(['org', 7]).action).toEqual({ _key_array: ['org', 7] })
    // This package's documents carry `holder` (once the library writes it): this process.
    if (byKey['payment-991'].holder) {
      expect(get('payment-991').holder).toMatchObject({ pid: process.pid, manager: expect.stringMatching(/^[0-9a-f]+$/) })
      expect(get(['org', 7]).holder.manager).toBe(get('payment-991').holder.manager)
    }
    expect(get('invoice-7')).toMatchObject({ holder: BILLING, fencingToken: 17, expired: false })
    expect(get('job-10')).toMatchObject({ holder: null, expired: true })
    expect(get('job-10').expiresInMs).toBeLessThan(-3000)
  })

  it('list: a table of key, holder, held for, expires in, token', async () => {
    const { byKey } = await populate()
    const run = await cli(['list'], { target: ctx })
    expect(run.code, run.stderr).toBe(0)
    const lines = run.stdout.trimEnd().split('\n')
    expect(lines[0]).toMatch(/^KEY +HOLDER +HELD FOR +EXPIRES IN +TOKEN$/)
    expect(lines).toHaveLength(6)
    const row = (key) => {
      const found = lines.find((l) => l.startsWith(`${key} `))
      expect(found, `${key} in\n${run.stdout}`).toBeDefined()
      return found.split(/ {2,}/)
    }
    expect(row('bank-details-42')).toEqual(['bank-details-42', UNKNOWN, expect.stringMatching(/^\d+s$/), expect.stringMatching(/^5\ds$|^60s$/), '-'])
    expect(row('invoice-7')).toEqual(['invoice-7', 'billing-api on web-3 (pid 4711)', expect.stringMatching(/^3m[01]\ds$/), expect.stringMatching(/^[45]\ds$/), '17'])
    expect(row('job-10')).toEqual(['job-10', UNKNOWN, expect.stringMatching(/^10m\d\ds$/), expect.stringMatching(/^expired \d+s ago$/), '-'])
    expect(row('payment-991')).toEqual([
      'payment-991',
      holderText(byKey['payment-991'].holder),
      expect.stringMatching(/^\d+s$/),
      expect.stringMatching(/^5\ds$|^60s$/),
      String(byKey['payment-991'].fencingToken),
    ])
    // A key that is not a string: json: and its JSON, as show and unlock take it back.
    expect(row('json:["org",7]')[1]).toBe(holderText(byKey['["org",7]'].holder))
  })

  it('show KEY: one lock in full; --json-key for a non-string key; --json', async () => {
    const { byKey } = await populate()
    const [stock, billing, arrayKey, json] = await Promise.all([
      cli(['show', 'bank-details-42'], { target: ctx }),
      cli(['show', 'invoice-7'], { target: ctx }),
      cli(['show', '--json-key', '["org",7]'], { target: ctx }),
      cli(['show', 'payment-991', '--json'], { target: ctx }),
    ])
    for (const run of [stock, billing, arrayKey, json]) expect(run.code, run.stderr).toBe(0)
    const field = (run, name) => run.stdout.split('\n').find((l) => l.startsWith(`${name} `))?.slice(name.length).trim()

    expect(field(stock, 'key')).toBe('bank-details-42')
    expect(field(stock, 'holder')).toBe(UNKNOWN)
    expect(stock.stdout).toContain('no holder in the document: a mongo-locks client wrote it, or an older mongo-locks-native')
    expect(field(stock, '_id')).toBe(byKey['bank-details-42']._id.toHexString())
    expect(field(stock, 'created')).toMatch(new RegExp(`^${byKey['bank-details-42'].createdAt.toISOString()}  held for \\d+s$`))
    expect(field(stock, 'expires')).toMatch(/ in (5\d|60)s$/)
    expect(field(stock, 'fencing token')).toBe('none (taken without fencing)')
    expect(field(stock, 'server time')).toMatch(/^\d{4}-\d\d-\d\dT/)

    expect(field(billing, 'holder')).toBe('billing-api on web-3 (pid 4711)')
    expect(field(billing, '  manager')).toBe(BILLING.manager)
    expect(field(billing, 'fencing token')).toBe('17')
    // Refreshed 8 s before populate() wrote it, timed at the server time the
    // CLI read (the CLIs may start seconds later on a loaded machine).
    const billingNow = Date.parse(field(billing, 'server time').split(' ')[0])
    const refreshedAgo = Math.floor((billingNow - byKey['invoice-7'].refreshedAt.getTime()) / 1000)
    expect(refreshedAgo).toBeGreaterThanOrEqual(8)
    expect(field(billing, 'refreshed')).toBe(`${byKey['invoice-7'].refreshedAt.toISOString()}  ${refreshedAgo}s ago`)

    expect(field(arrayKey, 'key')).toBe('json:["org",7]')
    expect(field(arrayKey, 'stored as')).toBe('action: {"_key_array":["org",7]}')
    expect(field(arrayKey, '_id')).toBe(byKey['["org",7]']._id.toHexString())

    const shown = JSON.parse(json.stdout)
    expect(shown.lock).toMatchObject({
      key: 'payment-991',
      _id: byKey['payment-991']._id.toHexString(),
      holder: byKey['payment-991'].holder ?? null,
      fencingToken: byKey['payment-991'].fencingToken,
      expired: false,
    })
    expect(shown.lock.heldForMs).toBe(Date.parse(shown.serverTime) - byKey['payment-991'].createdAt.getTime())
  })

  it('show of a key nobody holds: one line, exit 3; an empty collection lists nothing', async () => {
    await ours.ready
    const [none, empty, emptyJson] = await Promise.all([
      cli(['show', 'nobody-holds-this'], { target: ctx }),
      cli(['list'], { target: ctx }),
      cli(['list', '--json'], { target: ctx }),
    ])
    expect(none.code).toBe(3)
    expect(oneErrorLine(none)).toBe(`mongo-locks-native: no lock on nobody-holds-this in ${ctx.db.databaseName}.${ctx.name}`)
    expect(none.stdout).toBe('')
    expect(empty.stdout).toBe(`No locks in ${ctx.db.databaseName}.${ctx.name}.\n`)
    expect(JSON.parse(emptyJson.stdout).locks).toEqual([])
  })

  it('the database can come from the URI path', async () => {
    await ours.lock('from-uri-path')
    const url = new URL(mongoUrl())
    url.pathname = `/${ctx.db.databaseName}`
    const run = await runNode(CLI, ['list', '--uri', url.toString(), '--collection', ctx.name])
    expect(run.code, run.stderr).toBe(0)
    expect(run.stdout).toMatch(/^from-uri-path /m)
  })
})
