// The command-line tool, `npx mongo-locks-native list|show|watch|unlock`
// (bin/mongo-locks-native.js), run as a child process against the real
// server, on documents written by the real libraries: this package's
// LockManager and stock mongo-locks 3.2 on the same collection.
// `watch` and the interactive confirmation of `unlock` run under a real
// pseudo-terminal: tmux (Debian package `tmux`; installed here when CI=true
// and it is missing, else those tests are skipped).
import { describe, it, expect, beforeEach, afterEach } from 'vitest'
import { spawn, spawnSync, execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, readdirSync, rmSync, existsSync } from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { ObjectId } from 'mongodb'
import { root, lib, mongoUrl, freshCollection, runNode, startNode, eventually } from '../support/suite.mjs'
import { stockLockManager } from '../support/stock-mongo-locks.mjs'
import { freePort } from '../support/ferretdb.mjs'

const CLI = path.join(root, 'bin', 'mongo-locks-native.js')
const HOLDER = path.join(root, '__test__', 'fixtures', 'cli-holder.mjs')
const VERSION = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')).version
const UNKNOWN = 'unknown (mongo-locks or older)'

/** Runs the CLI with MONGO_URL set; `target` adds --db and --collection of a fresh collection. */
function cli(args, { target, env = {}, timeoutMs = 30_000 } = {}) {
  const where = target ? ['--db', target.db.databaseName, '--collection', target.name] : []
  return runNode(CLI, [...args, ...where], { env: { MONGO_URL: mongoUrl(), ...env }, timeoutMs })
}

/** The one line a failing command prints on stderr. */
function oneErrorLine(run) {
  const lines = run.stderr.split('\n').filter((l) => l !== '')
  expect(lines, run.stderr).toHaveLength(1)
  expect(lines[0]).toMatch(/^mongo-locks-native: /)
  return lines[0]
}

/** A lock document in the shape this package writes, `holder` included, inserted as is. */
function holderDoc(action, { createdAgoMs, refreshedAgoMs, expiresInMs, fencingToken, holder }) {
  const now = Date.now()
  return {
    _id: new ObjectId(),
    action,
    createdAt: new Date(now - createdAgoMs),
    refreshedAt: new Date(now - refreshedAgoMs),
    expiresAt: new Date(now + expiresInMs),
    ...(fencingToken !== undefined && { fencingToken }),
    ...(holder && { holder }),
  }
}

/** A fresh collection per test (`t.ctx`), and `t.manager(options)`: a LockManager on it, closed after the test. */
function withManagers(prefix) {
  const t = { ctx: null, managers: [] }
  beforeEach(async () => {
    t.ctx = await freshCollection(prefix)
    t.managers = []
  })
  afterEach(async () => {
    for (const m of t.managers) await m.close()
    await t.ctx.close()
  })
  t.manager = (options) => {
    const m = new lib.LockManager(t.ctx.collection, { logger: false, ...options })
    t.managers.push(m)
    return m
  }
  return t
}

const BILLING = { host: 'web-3', pid: 4711, app: 'billing-api', manager: '6b0a37da34c6b4700971f531' }

/** What the CLI shows as the holder of a document. */
const holderText = (h) => (!h ? UNKNOWN : h.app ? `${h.app} on ${h.host} (pid ${h.pid})` : `${h.host} (pid ${h.pid})`)

// --- Arguments: no server needed ---

describe('cli: arguments', () => {
  it('--help, help and no command print the usage; --version the version', async () => {
    const runs = await Promise.all([cli(['--help']), cli(['help']), cli([]), cli(['list', '-h'])])
    for (const run of runs) {
      expect(run.code, run.stderr).toBe(0)
      expect(run.stdout).toMatch(/^Usage: mongo-locks-native <command>/)
      for (const command of ['list', 'show KEY', 'watch', 'unlock KEY --force']) expect(run.stdout).toContain(command)
      expect(run.stdout).toBe(runs[0].stdout)
    }
    const version = await cli(['--version'])
    expect(version.code).toBe(0)
    expect(version.stdout).toBe(`${VERSION}\n`)
  })

  const usageErrors = [
    [['frob'], /unknown command "frob": expected one of list, show, watch, unlock, help/],
    [['list', '--frob'], /unknown option --frob/],
    [['list', '--db'], /--db needs a value/],
    [['list', 'extra'], /list takes no KEY/],
    [['list', '--force'], /list does not take --force/],
    [['show'], /show needs a KEY/],
    [['show', 'a', 'b'], /show takes one KEY, got 2/],
    [['show', 'a', '--json-key', '"a"'], /KEY or --json-key, not both/],
    [['show', '--json-key', '[1'], /--json-key is not valid JSON/],
    [['unlock', 'k'], /unlock needs --force/],
    [['unlock', 'k', '--yes'], /unlock needs --force/],
    [['watch', '--interval', '0'], /--interval takes a number of seconds/],
    [['list', '--timeout', 'soon'], /--timeout takes a number of seconds/],
    [['list', '--uri', 'http://localhost/app'], /--uri must start with mongodb:\/\/ or mongodb\+srv:\/\//],
  ]
  it('bad arguments: one line on stderr, exit 2, before any connection', async () => {
    const runs = await Promise.all(usageErrors.map(([args]) => cli([...args, '--db', 'x'])))
    runs.forEach((run, i) => {
      const [args, message] = usageErrors[i]
      expect(run.code, `${args.join(' ')}: ${run.stderr}`).toBe(2)
      expect(oneErrorLine(run)).toMatch(message)
      expect(run.stdout).toBe('')
    })
  })

  it('unlock missing several flags: one error naming each and why, exit 2, before any connection', async () => {
    // No server given either: these fail before looking for one.
    const env = { MONGO_URL: '' }
    const [bare, noKey, semaphore, rwlock] = await Promise.all([
      cli(['unlock', 'payment-991', '--db', 'x'], { env }),
      cli(['unlock', '--db', 'x', '--yes'], { env }),
      cli(['unlock', '--semaphore', 'exports', '--db', 'x'], { env }),
      cli(['unlock', '--rwlock', 'report', '--force', '--db', 'x'], { env }),
    ])
    for (const run of [bare, noKey, semaphore, rwlock]) {
      expect(run.code, run.stderr).toBe(2)
      expect(run.stdout).toBe('')
    }
    const force = '--force (the holder may still be working under the lock)'
    const yes = '--yes (no terminal to confirm on: stdin is not a TTY)'
    expect(oneErrorLine(bare)).toBe(`mongo-locks-native: unlock needs ${force} and ${yes} (see --help)`)
    expect(oneErrorLine(noKey)).toBe(
      'mongo-locks-native: unlock needs a KEY (or --json-key JSON, or --semaphore NAME --permit N, or --rwlock NAME with --writer or --reader N) ' +
        `and ${force} (see --help)`,
    )
    expect(oneErrorLine(semaphore)).toBe(
      `mongo-locks-native: unlock needs --permit N (which permit: show --semaphore exports lists them), ${force} and ${yes} (see --help)`,
    )
    // --force given, no terminal, --yes missing, the slot missing: both named, not --force.
    expect(oneErrorLine(rwlock)).toBe(
      `mongo-locks-native: unlock needs --writer or --reader N (which one: show --rwlock report lists them) and ${yes} (see --help)`,
    )
  })

  it('no database (neither --db nor one in the URI), no server given: exit 2', async () => {
    // mongoUrl() has no database in its path.
    const noDb = await cli(['list'])
    expect(noDb.code).toBe(2)
    expect(oneErrorLine(noDb)).toMatch(/no database given: pass --db NAME \(the connection string of MONGO_URL has no database in its path\)/)
    const noServer = await cli(['list', '--db', 'x'], { env: { MONGO_URL: '' } })
    expect(noServer.code).toBe(2)
    expect(oneErrorLine(noServer)).toMatch(/no server given: pass --uri .* or set MONGO_URL/)
  })

  it('nothing listening at the address: one line naming it (no password), exit 1, at once whatever --timeout says', async () => {
    const port = await freePort() // nothing listens there
    const [long, byDefault, twoHosts] = await Promise.all([
      cli(['list', '--uri', `mongodb://ops:s3cret@127.0.0.1:${port}/app?directConnection=true`, '--timeout', '20']),
      cli(['show', 'k', '--uri', `mongodb://127.0.0.1:${port}/app?directConnection=true`]),
      cli(['list', '--uri', `mongodb://127.0.0.1:${port},127.0.0.1:${port + 1}/app`, '--timeout', '20']),
    ])
    for (const run of [long, byDefault]) {
      expect(run.code, run.stderr).toBe(1)
      expect(oneErrorLine(run)).toBe(
        `mongo-locks-native: cannot reach the server at 127.0.0.1:${port}: connect ECONNREFUSED 127.0.0.1:${port}: ` +
          'nothing listens there (is the server running, and are the host and port right?)',
      )
    }
    expect(long.stderr).not.toContain('s3cret')
    // Every seed refused: no waiting either.
    expect(twoHosts.code).toBe(1)
    expect(oneErrorLine(twoHosts)).toMatch(new RegExp(`cannot reach the server at 127\\.0\\.0\\.1:${port},127\\.0\\.0\\.1:${port + 1}: .*nothing listens there`))
    // Well short of --timeout 20 (a loaded machine starts node slowly).
    for (const run of [long, byDefault, twoHosts]) expect(run.ms).toBeLessThan(8000)
  })

  it('a server that accepts connections and never answers: exit 1 within the timeout', async () => {
    const sockets = []
    const silent = net.createServer((s) => sockets.push(s))
    await new Promise((resolve) => silent.listen(0, '127.0.0.1', resolve))
    try {
      const run = await cli(['list', '--uri', `mongodb://127.0.0.1:${silent.address().port}/app?directConnection=true`, '--timeout', '2'])
      expect(run.code).toBe(1)
      expect(oneErrorLine(run)).toMatch(new RegExp(`cannot reach the server at 127\\.0\\.0\\.1:${silent.address().port} within 2s`))
      // The whole timeout (it is there: it may answer yet), and not the driver's 30 s.
      expect(run.ms).toBeGreaterThanOrEqual(2000)
      expect(run.ms).toBeLessThan(12_000)
    } finally {
      for (const s of sockets) s.destroy()
      silent.close()
    }
  })
})

// --- Against the server ---

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

describe('cli: the package', () => {
  it('ships every module of the command line', () => {
    const run = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], {
      cwd: root,
      encoding: 'utf8',
      env: { ...process.env, npm_config_update_notifier: 'false' },
    })
    expect(run.status, run.stderr).toBe(0)
    const packed = JSON.parse(run.stdout)[0].files.map((f) => f.path)
    const modules = readdirSync(path.join(root, 'bin', 'cli')).filter((f) => f.endsWith('.js'))
    expect(modules.length).toBeGreaterThan(3)
    for (const file of ['bin/mongo-locks-native.js', ...modules.map((f) => `bin/cli/${f}`)]) expect(packed).toContain(file)
  })
})

describe('cli: keys, primitives, databases and collections', () => {
  const t = withManagers('cli-locks')
  const manager = t.manager
  const place = () => `${t.ctx.db.databaseName}.${t.ctx.name}`
  /** The KEY column of list's table. */
  const keyColumn = (run) => run.stdout.trimEnd().split('\n').slice(1).map((l) => l.split(/ {2,}/)[0])

  it('keys: list prints a string key as it is, any other as json:JSON; show and unlock take back what list prints', async () => {
    const { ctx } = t
    const locker = manager()
    const held = {
      array: await locker.lock(['org', 7]),
      arrayText: await locker.lock('["org",7]'),
      number: await locker.lock(7),
      prefixed: await locker.lock('json:7'),
      plain: await locker.lock('payment-991'),
    }
    expect(Object.values(held).every(Boolean)).toBe(true)
    const listed = await cli(['list'], { target: ctx })
    expect(listed.code, listed.stderr).toBe(0)
    const printed = { array: 'json:["org",7]', arrayText: '["org",7]', number: 'json:7', prefixed: 'str:json:7', plain: 'payment-991' }
    expect(keyColumn(listed).sort()).toEqual(Object.values(printed).sort())

    // Each printed key, pasted back: that very lock, and the same text as its key.
    const names = Object.keys(printed)
    const shown = await Promise.all(names.map((name) => cli(['show', printed[name], '--json'], { target: ctx })))
    shown.forEach((run, i) => {
      expect(run.code, `${printed[names[i]]}: ${run.stderr}`).toBe(0)
      const { lock } = JSON.parse(run.stdout)
      expect(lock._id).toBe(held[names[i]].id)
      expect(lock.keyText).toBe(printed[names[i]])
    })
    const text = await cli(['show', 'json:["org",7]'], { target: ctx })
    expect(text.stdout).toMatch(/^key +json:\["org",7\]$/m)

    // unlock takes it too, and deletes that one only.
    const unlocked = await cli(['unlock', 'json:["org",7]', '--force', '--yes'], { target: ctx })
    expect(unlocked.code, unlocked.stderr).toBe(0)
    expect(unlocked.stdout).toContain(`deleted lock key="json:[\\"org\\",7]" _id=${held.array.id} `)
    expect(await ctx.collection.countDocuments({ action: { _key_array: ['org', 7] } })).toBe(0)
    expect(await ctx.collection.countDocuments({ action: '["org",7]' })).toBe(1)

    // The convention is in the help.
    const help = await cli(['help'])
    expect(help.stdout).toContain('json:["org",7]       any other key (an array, a number, an object): json: then its JSON')
    expect(help.stdout).toContain('str:json:x           a string key that itself starts with json: or str:, after str:')
  })

  it('keys: a key not held that looks like one held (its JSON, or the text of its JSON): exit 3 naming the one held and what to type', async () => {
    const { ctx } = t
    const locker = manager()
    const array = await locker.lock(['org', 7])
    await locker.lock('7')
    const [asString, asJson, unlockAsString] = await Promise.all([
      cli(['show', '["org",7]'], { target: ctx }),
      cli(['show', '--json-key', '7'], { target: ctx }),
      cli(['unlock', '["org",7]', '--force', '--yes'], { target: ctx }),
    ])
    for (const run of [asString, asJson, unlockAsString]) {
      expect(run.code, run.stderr).toBe(3)
      expect(run.stdout).toBe('')
    }
    expect(oneErrorLine(asString)).toBe(
      `mongo-locks-native: no lock on the string key ["org",7] in ${place()}; there is a lock on the array key json:["org",7]: ` +
        `show 'json:["org",7]' (or --json-key '["org",7]')`,
    )
    expect(oneErrorLine(asJson)).toBe(`mongo-locks-native: no lock on the number key json:7 in ${place()}; there is a lock on the string key 7: show 7`)
    expect(oneErrorLine(unlockAsString)).toMatch(/; there is a lock on the array key json:\["org",7\]: unlock 'json:\["org",7\]' --force /)
    // Nothing deleted by the unlock that found nothing; the hint's argument finds it.
    expect(await ctx.collection.countDocuments()).toBe(2)
    const hinted = await cli(['show', 'json:["org",7]', '--json'], { target: ctx })
    expect(JSON.parse(hinted.stdout).lock._id).toBe(array.id)
  })

  it('primitives: show --semaphore and --rwlock list every slot by name; unlock --permit and --reader delete one', async () => {
    const { ctx } = t
    const locker = manager({ ttlMs: 3000 })
    const exports = locker.semaphore('exports', { limit: 3 })
    const permits = [await exports.acquire(), await exports.acquire()]
    const report = locker.readWriteLock('report')
    const readers = [await report.read(), await report.read()]
    await locker.lock('exports') // a plain lock of the same name: not a permit
    for (const l of [...permits, ...readers]) expect(l).not.toBeNull()
    const slotDocs = await ctx.collection.find({ 'action._semaphore': 'exports' }).toArray()
    const numbers = slotDocs.map((d) => d.action.permit).sort((a, b) => a - b)
    expect(numbers).toHaveLength(2)
    const readerDocs = await ctx.collection.find({ 'action._rwlock': 'report' }).toArray()
    const readerNumbers = readerDocs.map((d) => d.action.reader).sort((a, b) => a - b)

    const [semaphore, semaphoreJson, rwlock, onePermit] = await Promise.all([
      cli(['show', '--semaphore', 'exports'], { target: ctx }),
      cli(['show', '--semaphore', 'exports', '--json'], { target: ctx }),
      cli(['show', '--rwlock', 'report'], { target: ctx }),
      cli(['show', '--semaphore', 'exports', '--permit', String(numbers[1])], { target: ctx }),
    ])
    for (const run of [semaphore, semaphoreJson, rwlock, onePermit]) expect(run.code, run.stderr).toBe(0)
    const holder = holderText(slotDocs[0].holder)

    const lines = semaphore.stdout.trimEnd().split('\n')
    expect(lines[0]).toBe(`semaphore exports in ${place()}: 2 permits held`)
    expect(lines[1]).toMatch(/^PERMIT +HOLDER +HELD FOR +EXPIRES IN +TOKEN +_ID$/)
    const rows = lines.slice(2, -1).map((l) => l.split(/ {2,}/))
    expect(rows.map((r) => r[0])).toEqual(numbers.map(String))
    for (const [n, who, heldFor, expires, token, id] of rows) {
      expect(id).toBe(slotDocs.find((d) => d.action.permit === Number(n))._id.toHexString())
      expect([who, token]).toEqual([holder, '-'])
      expect(heldFor).toMatch(/^\d+s$/)
      expect(expires).toMatch(/^\d+s$/)
    }
    expect(lines.at(-1)).toMatch(/^server time \d{4}-/)

    const json = JSON.parse(semaphoreJson.stdout)
    expect(json.semaphore).toBe('exports')
    expect(json.slots.map((s) => [s.slot, s.index])).toEqual(numbers.map((n) => ['permit', n]))
    expect(json.slots[0].action).toEqual({ _semaphore: 'exports', permit: numbers[0] })

    const rwLines = rwlock.stdout.trimEnd().split('\n')
    expect(rwLines[0]).toBe(`read/write lock report in ${place()}: no writer and 2 readers`)
    expect(rwLines[1]).toMatch(/^SLOT +HOLDER +HELD FOR +EXPIRES IN +TOKEN +_ID$/)
    expect(rwLines.slice(2, -1).map((l) => l.split(/ {2,}/)[0])).toEqual(readerNumbers.map((n) => `reader ${n}`))

    expect(onePermit.stdout).toMatch(new RegExp(`^slot +permit ${numbers[1]} of semaphore exports \\(show --semaphore exports lists them all\\)$`, 'm'))
    expect(onePermit.stdout).toMatch(new RegExp(`^key +json:\\{"_semaphore":"exports","permit":${numbers[1]}\\}$`, 'm'))

    // unlock one permit, by its number: its holder loses it, the other keeps its own.
    const victim = permits.find((p) => p.action.permit === numbers[0])
    const survivor = permits.find((p) => p !== victim)
    const unlocked = await cli(['unlock', '--semaphore', 'exports', '--permit', String(numbers[0]), '--force', '--yes'], { target: ctx })
    expect(unlocked.code, unlocked.stderr).toBe(0)
    expect(unlocked.stdout).toContain(`deleted lock key="json:{\\"_semaphore\\":\\"exports\\",\\"permit\\":${numbers[0]}}" _id=${victim.id} `)
    expect(await eventually(() => victim.signal.aborted, 5000)).toBe(true)
    expect(survivor.signal.aborted).toBe(false)
    expect(await ctx.collection.countDocuments({ 'action._semaphore': 'exports' })).toBe(1)
    expect(await ctx.collection.countDocuments({ action: 'exports' })).toBe(1)

    // The permit is gone: exit 3, pointing at the ones still held.
    const gone = await cli(['show', '--semaphore', 'exports', '--permit', String(numbers[0])], { target: ctx })
    expect(gone.code).toBe(3)
    expect(oneErrorLine(gone)).toBe(
      `mongo-locks-native: permit ${numbers[0]} of semaphore exports is not held in ${place()}; other slots of the semaphore exports are held: show --semaphore exports`,
    )

    // A reader, by its number.
    const reader = await cli(['unlock', '--rwlock', 'report', '--reader', String(readerNumbers[1]), '--force', '--yes'], { target: ctx })
    expect(reader.code, reader.stderr).toBe(0)
    expect(await ctx.collection.findOne({ 'action._rwlock': 'report' })).toMatchObject({ action: { _rwlock: 'report', reader: readerNumbers[0] } })

    // A name held by another primitive, or nothing of that name: said so.
    const wrongKind = await cli(['show', '--rwlock', 'exports'], { target: ctx })
    expect(wrongKind.code).toBe(3)
    expect(oneErrorLine(wrongKind)).toBe(
      `mongo-locks-native: read/write lock exports is not held in ${place()}; there is a lock on the string key exports: show exports`,
    )
  })

  it('a semaphore waiter that queued shows as such, after the permits', async () => {
    const { ctx } = t
    const locker = manager({ ttlMs: 3000 })
    const pool = locker.semaphore('pool', { limit: 1 })
    const held = await pool.acquire()
    const waiting = manager({ ttlMs: 3000 }).semaphore('pool', { limit: 1 }).acquire({ waitMs: 20_000 })
    // A waiter takes its place in the queue after 500 ms of waiting.
    expect(await eventually(async () => (await ctx.collection.countDocuments({ 'action.queue': { $exists: true } })) === 1, 10_000)).toBe(true)
    const run = await cli(['show', '--semaphore', 'pool'], { target: ctx })
    expect(run.code, run.stderr).toBe(0)
    const lines = run.stdout.trimEnd().split('\n')
    expect(lines[0]).toBe(`semaphore pool in ${place()}: 1 permit held, 1 waiter queued`)
    expect(lines.slice(2, -1).map((l) => l.split(/ {2,}/)[0])).toEqual([String(held.action.permit), 'queue 0'])
    await held.free()
    const next = await waiting
    expect(next).not.toBeNull()
    await next.free()
    // Its place is given up once it holds a permit.
    expect(await eventually(async () => (await ctx.collection.countDocuments()) === 0, 5000)).toBe(true)
  })

  it('a database or collection that does not exist: list, show and watch exit 4 naming which and the ones that exist', async () => {
    const { ctx } = t
    await manager().lock('payment-991')
    const db = ctx.db.databaseName
    const wrongDb = { db: { databaseName: `${db}-typo` }, name: ctx.name }
    const wrongCollection = { db: ctx.db, name: `${ctx.name}-typo` }
    const runs = await Promise.all([
      cli(['list'], { target: wrongDb }),
      cli(['show', 'payment-991'], { target: wrongDb }),
      cli(['watch'], { target: wrongDb }),
      cli(['list', '--json'], { target: wrongCollection }),
      cli(['show', 'payment-991'], { target: wrongCollection }),
      cli(['watch'], { target: wrongCollection }),
    ])
    for (const run of runs) {
      expect(run.code, run.stderr).toBe(4)
      expect(run.stdout).toBe('')
    }
    // Which one does not exist, and where the collection asked for (or one named like locks) does.
    for (const run of runs.slice(0, 3)) {
      expect(oneErrorLine(run)).toMatch(
        new RegExp(`^mongo-locks-native: no database "${db}-typo" \\(check --db\\); collections that look like locks: ${db}\\.${ctx.name}(, |$)`),
      )
    }
    for (const run of runs.slice(3)) {
      const line = oneErrorLine(run)
      expect(line).toMatch(new RegExp(`^mongo-locks-native: no collection "${ctx.name}-typo" in database "${db}" \\(check --collection\\); collections that look like locks: `))
      expect(line.split('; ')[1].split(/: |, /)).toContain(`${db}.${ctx.name}`)
    }
    // An existing collection without locks: exit 0, "no locks".
    await ctx.collection.deleteMany({})
    const [empty, emptyJson] = await Promise.all([cli(['list'], { target: ctx }), cli(['list', '--json'], { target: ctx })])
    expect(empty.code, empty.stderr).toBe(0)
    expect(empty.stdout).toBe(`No locks in ${place()}.\n`)
    expect(emptyJson.code).toBe(0)
    expect(JSON.parse(emptyJson.stdout).locks).toEqual([])
    // The exit status is in the help.
    expect((await cli(['help'])).stdout).toContain('4  no such database or collection')
  })
})

// --- Under a terminal: tmux ---

/** tmux on PATH; on CI (CI=true) installed with apt-get if missing. */
function ensureTmux() {
  const have = () => spawnSync('tmux', ['-V'], { stdio: 'ignore' }).status === 0
  if (have()) return true
  if (process.env.CI === 'true') {
    spawnSync('apt-get', ['update', '-qq'], { stdio: 'inherit' })
    spawnSync('apt-get', ['install', '-y', '-qq', 'tmux'], { stdio: 'inherit' })
    return have()
  }
  return false
}
const hasTmux = ensureTmux()

const sh = (s) => `'${String(s).replace(/'/g, `'\\''`)}'`
let sessions = 0

/** A tmux server of its own (its own socket), running one command in a 120×30 pane. */
function terminal(args) {
  const socket = `mln-cli-${process.pid}-${sessions++}`
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mln-cli-'))
  const rcFile = path.join(dir, 'rc')
  const tmux = (...a) => execFileSync('tmux', ['-L', socket, ...a], { encoding: 'utf8' })
  // The exit status goes to a file, and the pane stays open to be inspected.
  const command = `${[process.execPath, CLI, ...args].map(sh).join(' ')}; echo $? > ${sh(rcFile)}; sleep 120`
  tmux('new-session', '-d', '-s', 'cli', '-x', '120', '-y', '30', command)
  return {
    screen: () => tmux('capture-pane', '-p', '-t', 'cli'),
    /** tmux's view of the pane: alternate screen on, cursor shown. */
    mode: () => {
      const [alternate, cursor] = tmux('display', '-p', '-t', 'cli', '#{alternate_on} #{cursor_flag}').trim().split(' ')
      return { alternate: alternate === '1', cursor: cursor === '1' }
    },
    keys: (...keys) => tmux('send-keys', '-t', 'cli', ...keys),
    exitCode: () => (existsSync(rcFile) ? Number(readFileSync(rcFile, 'utf8').trim()) : null),
    close() {
      spawnSync('tmux', ['-L', socket, 'kill-server'], { stdio: 'ignore' })
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

describe.skipIf(!hasTmux)('cli: under a terminal (tmux)', () => {
  const t = withManagers('cli-tty')
  let term
  // Registered after withManagers' hooks: runs before them, the terminal closed first.
  afterEach(() => {
    term?.close()
    term = undefined
  })
  const manager = () => t.manager()
  const where = () => ['--uri', mongoUrl(), '--db', t.ctx.db.databaseName, '--collection', t.ctx.name]

  it('watch redraws the list live: a lock taken appears, a lock freed disappears; q quits and restores the terminal', async () => {
    const locker = manager()
    await locker.ready
    term = terminal(['watch', '--interval', '0.3', ...where()])
    const shows = async (pattern, ms = 10_000) => {
      const found = await eventually(() => pattern.test(term.screen()), ms)
      expect(found, `${pattern} on screen:\n${term.screen()}`).toBe(true)
    }
    await shows(/No locks\./)
    expect(term.screen()).toContain(`${t.ctx.db.databaseName}.${t.ctx.name} on `)
    expect(term.mode()).toEqual({ alternate: true, cursor: false })

    const lock = await locker.lock('watched-key')
    await shows(/^watched-key +\S/m)
    expect(term.screen()).toMatch(/^1 lock  server time /m)
    await lock.free()
    await shows(/No locks\./)
    expect(term.screen()).not.toContain('watched-key')

    term.keys('q')
    expect(await eventually(() => term.exitCode() !== null, 5000)).toBe(true)
    expect(term.exitCode()).toBe(0)
    expect(term.mode()).toEqual({ alternate: false, cursor: true })
    expect(term.screen()).not.toContain('No locks.')
  })

  it('watch quits on Ctrl-C too', async () => {
    await manager().ready // the collection exists (a missing one is exit 4)
    term = terminal(['watch', ...where()])
    expect(await eventually(() => term.screen().includes('q: quit'), 10_000)).toBe(true)
    term.keys('C-c')
    expect(await eventually(() => term.exitCode() !== null, 5000)).toBe(true)
    expect(term.exitCode()).toBe(0)
    expect(term.mode()).toEqual({ alternate: false, cursor: true })
  })

  it('unlock --force asks first: y deletes', async () => {
    const lock = await manager().lock('payment-991')
    const doc = await t.ctx.collection.findOne({})
    term = terminal(['unlock', 'payment-991', '--force', ...where()])
    const question = `Delete the lock on payment-991 held by ${holderText(doc.holder)}? [y/N]`
    expect(await eventually(() => term.screen().includes(question), 10_000), term.screen()).toBe(true)
    expect(await t.ctx.collection.countDocuments()).toBe(1) // nothing before the answer
    term.keys('y', 'Enter')
    expect(await eventually(() => term.exitCode() !== null, 10_000)).toBe(true)
    expect(term.exitCode()).toBe(0)
    expect(term.screen()).toContain(`deleted lock key="payment-991" _id=${lock.id} `)
    expect(await t.ctx.collection.countDocuments()).toBe(0)
  })

  it('unlock --force asks first: anything but y keeps the lock, exit 2', async () => {
    await manager().lock('payment-991')
    term = terminal(['unlock', 'payment-991', '--force', ...where()])
    expect(await eventually(() => term.screen().includes('[y/N]'), 10_000), term.screen()).toBe(true)
    term.keys('Enter')
    expect(await eventually(() => term.exitCode() !== null, 10_000)).toBe(true)
    expect(term.exitCode()).toBe(2)
    expect(term.screen()).toContain('mongo-locks-native: not deleted: the lock on payment-991 is still held')
    expect(await t.ctx.collection.countDocuments()).toBe(1)
  })
})
