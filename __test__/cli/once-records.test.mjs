// The command-line tool on the records of locker.once(), kept in the same
// collection as the locks: `list` does not show them as locks (it counts
// them), `records` lists them, `show --once KEY` shows one in full. The
// records are made by a real LockManager's once() on the server under test:
// completed, failed (rememberErrors), expired, and one still running.
import { describe, it, expect, afterEach } from 'vitest'
import { cli, oneErrorLine, withManagers, holderText } from './cli-helpers.mjs'

describe('cli: once() records', () => {
  const t = withManagers('cli-once')
  const place = () => `${t.ctx.db.databaseName}.${t.ctx.name}`
  let release = null
  afterEach(async () => {
    // The running record's function returns, so its manager can close.
    release?.()
    release = null
  })

  /** A lock and once() records of every state; resolves to the manager, the running call and the documents by record key. */
  async function populate() {
    const locker = t.manager()
    const lock = await locker.lock('payment-991')
    expect(lock).not.toBeNull()
    const paidAt = new Date('2026-01-02T03:04:05.678Z')
    expect(await locker.once('refund-2291', async () => ({ refunded: 4200, paidAt }), { payload: { order: 2291, amount: 4200 } })).toEqual({ refunded: 4200, paidAt })
    expect(await locker.once(['org', 7], async () => 'welcome mail sent')).toBe('welcome mail sent')
    const failure = Object.assign(new Error('the bank said no'), { code: 'BANK_REFUSED' })
    await expect(locker.once('import-17', async () => { throw failure }, { rememberErrors: true })).rejects.toThrow('the bank said no')
    expect(await locker.once('short-lived', async () => 1, { ttlMs: 1 })).toBe(1)
    let started
    const running = new Promise((resolve) => { started = resolve })
    const call = locker.once('nightly-report', ({ fencingToken }) => {
      started(fencingToken)
      return new Promise((resolve) => { release = () => resolve('done') })
    })
    await running
    const docs = await t.ctx.collection.find({ 'action._once': { $exists: true } }).toArray()
    expect(docs).toHaveLength(5)
    const byKey = Object.fromEntries(docs.map((d) => [JSON.stringify(d.action._once._key_array ?? d.action._once), d]))
    return { locker, lock, call, byKey }
  }

  it('list shows the locks only, and counts the records; list --json the same', async () => {
    const { lock } = await populate()
    const [text, json] = await Promise.all([cli(['list'], { target: t.ctx }), cli(['list', '--json'], { target: t.ctx })])
    expect(text.code, text.stderr).toBe(0)
    const lines = text.stdout.trimEnd().split('\n')
    expect(lines[0]).toMatch(/^KEY +HOLDER +HELD FOR +EXPIRES IN +TOKEN$/)
    expect(lines.slice(1, -1).map((l) => l.split(/ {2,}/)[0])).toEqual(['payment-991'])
    expect(lines.at(-1)).toBe('(5 once() records in the collection too: the records command lists them)')
    expect(json.code, json.stderr).toBe(0)
    const out = JSON.parse(json.stdout)
    expect(out.locks.map((l) => l._id)).toEqual([lock.id])
    expect(out.onceRecords).toBe(5)
    // Only records: not "no such collection", and not an empty-looking list.
    await lock.free()
    const only = await cli(['list'], { target: t.ctx })
    expect(only.code, only.stderr).toBe(0)
    expect(only.stdout).toBe(`No locks in ${place()} (5 once() records in the collection too: the records command lists them).\n`)
  })

  it('records --json: every record, as its document and inspectOnce() say, timed on the server clock', async () => {
    const { locker, byKey } = await populate()
    const run = await cli(['records', '--json'], { target: t.ctx })
    expect(run.code, run.stderr).toBe(0)
    const out = JSON.parse(run.stdout)
    expect(out).toMatchObject({ database: t.ctx.db.databaseName, collection: t.ctx.name, clock: 'server' })
    const serverTime = Date.parse(out.serverTime)
    expect(out.records.map((r) => r.keyText)).toEqual(['import-17', 'json:["org",7]', 'nightly-report', 'refund-2291', 'short-lived'])
    for (const record of out.records) {
      const doc = byKey[JSON.stringify(record.key)]
      expect(doc, record.keyText).toBeDefined()
      const seen = await locker.inspectOnce(record.key)
      expect(record).toMatchObject({
        _id: doc._id.toHexString(),
        action: doc.action,
        state: seen.state,
        ranBy: doc.ranBy ?? doc.holder,
        createdAt: doc.createdAt.toISOString(),
        expiresAt: doc.expiresAt.toISOString(),
        completedAt: doc.completedAt ? doc.completedAt.toISOString() : null,
        ageMs: serverTime - doc.createdAt.getTime(),
        expiresInMs: doc.expiresAt.getTime() - serverTime,
        resultBytes: seen.resultBytes,
        payloadHash: seen.payloadHash,
        fencingToken: Number(seen.fencingToken),
      })
      expect(record.ranBy).toMatchObject({ pid: process.pid, manager: expect.stringMatching(/^[0-9a-f]{24}$/) })
      // The list leaves the stored values out (show --once has them).
      expect(record).not.toHaveProperty('result')
    }
    const get = (keyText) => out.records.find((r) => r.keyText === keyText)
    expect(get('nightly-report')).toMatchObject({ state: 'running', resultBytes: null, completedAt: null, expired: false })
    expect(get('refund-2291')).toMatchObject({ state: 'completed', expired: false, payloadHash: expect.stringMatching(/^[0-9a-f]{64}$/) })
    expect(get('refund-2291').resultBytes).toBeGreaterThan(20)
    expect(get('refund-2291').expiresInMs).toBeGreaterThan(23 * 3600_000) // the default ttlMs: a day
    expect(get('import-17')).toMatchObject({ state: 'failed', error: { name: 'Error', message: 'the bank said no', code: 'BANK_REFUSED' } })
    expect(get('short-lived')).toMatchObject({ state: 'completed', expired: true })
    expect(get('json:["org",7]')).toMatchObject({ key: ['org', 7], action: { _once: { _key_array: ['org', 7] } } })
  })

  it('records: a table of key, state, age, expiry, result size, who ran it, token', async () => {
    const { byKey } = await populate()
    const run = await cli(['records'], { target: t.ctx })
    expect(run.code, run.stderr).toBe(0)
    const lines = run.stdout.trimEnd().split('\n')
    expect(lines[0]).toMatch(/^KEY +STATE +AGE +EXPIRES +RESULT +RAN BY +TOKEN$/)
    expect(lines).toHaveLength(6)
    const row = (key) => {
      const found = lines.find((l) => l.startsWith(`${key} `))
      expect(found, `${key} in\n${run.stdout}`).toBeDefined()
      return found.split(/ {2,}/)
    }
    const ranBy = holderText(byKey['"refund-2291"'].ranBy)
    const token = (key) => String(byKey[key].fencingToken)
    expect(row('refund-2291')).toEqual(['refund-2291', 'completed', expect.stringMatching(/^\d+s$/), expect.stringMatching(/^in 23h5\dm$|^in 1d00h$/), `${byKey['"refund-2291"'].resultBytes} B`, ranBy, token('"refund-2291"')])
    expect(row('import-17')).toEqual(['import-17', 'failed', expect.stringMatching(/^\d+s$/), expect.stringMatching(/^in 23h5\dm$|^in 1d00h$/), expect.stringMatching(/^\d+ B$/), ranBy, token('"import-17"')])
    expect(row('nightly-report')).toEqual(['nightly-report', 'running', expect.stringMatching(/^\d+s$/), expect.stringMatching(/^in [56]\ds$/), '-', holderText(byKey['"nightly-report"'].holder), token('"nightly-report"')])
    expect(row('short-lived')).toEqual(['short-lived', 'completed', expect.stringMatching(/^\d+s$/), expect.stringMatching(/^expired \d+s ago$/), expect.stringMatching(/^\d+ B$/), ranBy, token('"short-lived"')])
    expect(row('json:["org",7]').slice(0, 2)).toEqual(['json:["org",7]', 'completed'])
  })

  it('show --once KEY: one record in full; --json with its stored result; its own action as a KEY works too', async () => {
    const { byKey } = await populate()
    const [refund, failed, running, json, asAction] = await Promise.all([
      cli(['show', '--once', 'refund-2291'], { target: t.ctx }),
      cli(['show', '--once', 'import-17'], { target: t.ctx }),
      cli(['show', '--once', 'nightly-report'], { target: t.ctx }),
      cli(['show', '--once', 'refund-2291', '--json'], { target: t.ctx }),
      cli(['show', 'json:{"_once":{"_key_array":["org",7]}}', '--json'], { target: t.ctx }),
    ])
    for (const run of [refund, failed, running, json, asAction]) expect(run.code, run.stderr).toBe(0)
    const field = (run, name) => run.stdout.split('\n').find((l) => l.startsWith(`${name} `))?.slice(name.length).trim()
    const doc = byKey['"refund-2291"']

    expect(field(refund, 'once() key')).toBe('refund-2291')
    expect(field(refund, 'state')).toBe('completed: later once() calls get its stored result')
    expect(field(refund, 'ran on')).toBe(holderText(doc.ranBy))
    expect(field(refund, '_id')).toBe(doc._id.toHexString())
    expect(field(refund, 'finished')).toMatch(new RegExp(`^${doc.completedAt.toISOString()}  \\d+s ago$`))
    expect(field(refund, 'expires')).toMatch(new RegExp(`^${doc.expiresAt.toISOString()}  in (23h5\\dm|1d00h): until then, once\\(\\) calls get this result$`))
    expect(field(refund, 'result')).toBe(`${doc.resultBytes} B as BSON (--json shows the value)`)
    expect(field(refund, 'payload')).toBe(`SHA-256 ${doc.payloadHash}`)
    expect(field(refund, 'fencing token')).toBe(String(doc.fencingToken))

    expect(field(failed, 'state')).toBe('failed: its function threw and rememberErrors kept the failure')
    expect(field(failed, 'error')).toBe('Error: the bank said no (code "BANK_REFUSED")')
    expect(field(failed, 'payload')).toBe('none given (calls with any payload get the outcome)')

    expect(field(running, 'state')).toBe('running: its function has not returned yet')
    expect(field(running, 'running on')).toBe(holderText(byKey['"nightly-report"'].holder))
    expect(field(running, 'expires')).toMatch(/ in [56]\ds: refreshed while the function runs; taken over by the next once\(\) call if its process stops refreshing it$/)

    const shown = JSON.parse(json.stdout).record
    expect(shown).toMatchObject({ key: 'refund-2291', state: 'completed', _id: doc._id.toHexString(), payloadHash: doc.payloadHash })
    // The stored value as extended JSON: the Date stays a date.
    expect(shown.result).toEqual({ refunded: 4200, paidAt: { $date: '2026-01-02T03:04:05.678Z' } })

    expect(JSON.parse(asAction.stdout).record).toMatchObject({ key: ['org', 7], keyText: 'json:["org",7]', result: 'welcome mail sent' })
  })

  it('a record or lock asked for under the other\'s name: exit 3 saying which exists and what to type; no record at all: exit 3', async () => {
    await populate()
    const [lockOfRecord, recordOfLock, none] = await Promise.all([
      cli(['show', 'refund-2291'], { target: t.ctx }),
      cli(['show', '--once', 'payment-991'], { target: t.ctx }),
      cli(['show', '--once', 'nobody-ran-this'], { target: t.ctx }),
    ])
    for (const run of [lockOfRecord, recordOfLock, none]) {
      expect(run.code).toBe(3)
      expect(run.stdout).toBe('')
    }
    expect(oneErrorLine(lockOfRecord)).toBe(`mongo-locks-native: no lock on the string key refund-2291 in ${place()}; there is a once() record of refund-2291: show --once refund-2291`)
    expect(oneErrorLine(recordOfLock)).toBe(`mongo-locks-native: no once() record of the string key payment-991 in ${place()}; there is a lock on the string key payment-991: show payment-991`)
    expect(oneErrorLine(none)).toBe(`mongo-locks-native: no once() record of nobody-ran-this in ${place()}`)
  })

  it('unlock json:{"_once":KEY} --force --yes deletes that record only; the next once() of the key runs again', async () => {
    const { locker, byKey } = await populate()
    const doc = byKey['"refund-2291"']
    const run = await cli(['unlock', 'json:{"_once":"refund-2291"}', '--force', '--yes'], { target: t.ctx })
    expect(run.code, run.stderr).toBe(0)
    expect(run.stdout).toBe(`deleted once() record key="refund-2291" _id=${doc._id.toHexString()} state=completed ran_by=${JSON.stringify(holderText(doc.ranBy))} in=${place()}\n`)
    expect(await t.ctx.collection.countDocuments({ action: { _once: 'refund-2291' } })).toBe(0)
    expect(await t.ctx.collection.countDocuments({ 'action._once': { $exists: true } })).toBe(4)
    let ran = 0
    expect(await locker.once('refund-2291', async () => ++ran, { payload: { order: 2291, amount: 4200 } })).toBe(1)
    expect(ran).toBe(1)
  })

  it('records with none: one line; a collection that does not exist: exit 4, as for list', async () => {
    const locker = t.manager()
    await locker.lock('payment-991')
    const [empty, emptyJson, missing] = await Promise.all([
      cli(['records'], { target: t.ctx }),
      cli(['records', '--json'], { target: t.ctx }),
      cli(['records', '--db', t.ctx.db.databaseName, '--collection', `${t.ctx.name}-nope`]),
    ])
    expect(empty.code, empty.stderr).toBe(0)
    expect(empty.stdout).toBe(`No once() records in ${place()}.\n`)
    expect(JSON.parse(emptyJson.stdout).records).toEqual([])
    expect(missing.code).toBe(4)
    expect(oneErrorLine(missing)).toMatch(new RegExp(`^mongo-locks-native: no collection "${t.ctx.name}-nope" in database "${t.ctx.db.databaseName}"`))
  })

  it('bad arguments: one usage line, exit 2, before connecting', async () => {
    const runs = await Promise.all([
      cli(['show', '--once', 'a', '--permit', '1']),
      cli(['show', '--once', 'a', 'b']),
      cli(['records', 'a']),
      cli(['list', '--once', 'a']),
      cli(['show', '--once', 'json:{']),
    ])
    for (const run of runs) expect(run.code, run.stderr).toBe(2)
    expect(oneErrorLine(runs[0])).toBe('mongo-locks-native: --once takes no --permit: a once() record has one document')
    expect(oneErrorLine(runs[1])).toBe('mongo-locks-native: show takes one of KEY, --json-key, --semaphore, --rwlock or --once, got KEY and --once')
    expect(oneErrorLine(runs[2])).toBe('mongo-locks-native: records takes no KEY, got "a"')
    expect(oneErrorLine(runs[3])).toBe('mongo-locks-native: list does not take --once (see --help)')
    expect(oneErrorLine(runs[4])).toMatch(/^mongo-locks-native: --once json:\{: the text after json: is not valid JSON/)
  })
})
