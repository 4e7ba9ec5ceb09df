// The command-line tool on what it names: keys (a string as it is, any
// other as json:JSON, taken back by show and unlock), the primitives' slots
// (semaphore permits and waiters, read/write lock readers), and databases or
// collections that do not exist.
import { describe, it, expect } from 'vitest'
import { eventually } from '../support/suite.mjs'
import { cli, oneErrorLine, withManagers, holderText } from './cli-helpers.mjs'

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
