// The command-line tool's arguments, before any connection: the usage and
// version, bad or missing flags (one line on stderr, exit 2), no database
// named; and what it says when nothing listens at the address or the server
// accepts connections and never answers.
import { describe, it, expect } from 'vitest'
import net from 'node:net'
import { freePort } from '../support/ferretdb.mjs'
import { VERSION, cli, oneErrorLine } from './cli-helpers.mjs'

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
    [['frob'], /unknown command "frob": expected one of list, records, show, watch, unlock, help/],
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
    // Every host of the seed list (the connection string's hosts) refused: no waiting either.
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
