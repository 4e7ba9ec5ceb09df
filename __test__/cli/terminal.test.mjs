// `watch` and the interactive confirmation of `unlock` under a real
// pseudo-terminal: tmux (Debian package `tmux`; installed here when CI=true
// and it is missing, else those tests are skipped).
import { describe, it, expect, afterEach } from 'vitest'
import { spawnSync, execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { mongoUrl, eventually } from '../support/suite.mjs'
import { CLI, withManagers, holderText } from './cli-helpers.mjs'

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
