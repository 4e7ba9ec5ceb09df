// Shared by the test files: the server under test (MONGO_URL, set by
// scripts/test.mjs to a throwaway FerretDB, or by you to any MongoDB), and a
// fresh collection per test.
import { MongoClient } from 'mongodb'
import { describe, it, beforeEach, afterEach, beforeAll, afterAll } from 'vitest'
import { spawn } from 'node:child_process'
import { mkdirSync, rmSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { createRequire } from 'node:module'
import { startFerretDB } from './ferretdb.mjs'
import { startPostgres } from './postgres.mjs'
import { faketimeLibrary, FAKETIME_INSTALL, NOT_CHECKED_DIR } from './faketime.mjs'
import { serverCommandCounter } from './command-counter.mjs'

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
const require = createRequire(import.meta.url)
/** The package as `require('mongo-locks-native')` gives it. */
export const lib = require('../../index.js')

export function mongoUrl() {
  const url = process.env.MONGO_URL
  if (!url) throw new Error('MONGO_URL is not set: run the suite with `npm test`, which starts FerretDB, or set MONGO_URL')
  return url
}

let counter = 0
/** A MongoClient and a collection no other test uses; `close()` drops it. */
export async function freshCollection(prefix = 'locks') {
  const client = await MongoClient.connect(mongoUrl())
  const db = client.db('mongo-locks-native-test')
  const name = `${prefix}-${process.pid}-${Date.now()}-${counter++}`
  const collection = db.collection(name)
  return {
    client,
    db,
    collection,
    name,
    async close() {
      await collection.drop().catch(() => {})
      await client.close()
    },
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

/** Polls `fn` until it returns truthy or `ms` pass; returns the last value. */
export async function eventually(fn, ms = 10_000, step = 50) {
  const deadline = Date.now() + ms
  let last
  while (Date.now() < deadline) {
    last = await fn()
    if (last) return last
    await sleep(step)
  }
  return last
}

/**
 * Runs `node file args…` (or `node prefix… file args…`, e.g. faketime's),
 * resolving to { code, signal, stdout, stderr, ms }.
 */
export function runNode(file, args = [], { node = process.execPath, prefix = [], env = {}, timeoutMs = 60_000 } = {}) {
  return new Promise((resolve, reject) => {
    const started = Date.now()
    const child = spawn(node, [...prefix, file, ...args], {
      cwd: root,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => { stdout += d })
    child.stderr.on('data', (d) => { stderr += d })
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`${path.basename(file)} did not exit within ${timeoutMs} ms\nstdout: ${stdout}\nstderr: ${stderr}`))
    }, timeoutMs)
    child.on('exit', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout, stderr, ms: Date.now() - started })
    })
  })
}

/** Node 24 from the `node` npm package (for `await using`). */
export const node24 = path.join(root, 'node_modules', 'node', 'bin', 'node')

/**
 * Every way an application makes a manager: each must offer every method.
 * `make(ctx, options)` resolves to `{ locker, stop }` on `ctx`'s collection.
 */
export const MANAGER_KINDS = {
  'new LockManager(collection)': async (ctx, options) => {
    const locker = new lib.LockManager(ctx.collection, { logger: false, ...options })
    return { locker, stop: () => locker.close() }
  },
  'LockManager.connect(uri)': async (ctx, options) => {
    const locker = await lib.LockManager.connect(mongoUrl(), { database: ctx.db.databaseName, collection: ctx.name, logger: false, ...options })
    return { locker, stop: () => locker.close() }
  },
  'the Hapi plugin with mongoUrl': (ctx, options) => hapiLocker({ mongoUrl: mongoUrl(), databaseName: ctx.db.databaseName, collection: ctx.name }, options),
  'the Hapi plugin with collection': (ctx, options) => hapiLocker({ collection: ctx.collection }, options),
}

/** A Hapi server with our plugin; its locker (quiet: nothing listens to server.log) and how to stop it. */
async function hapiLocker(pluginOptions, { logger, ...options } = {}) {
  const Hapi = require('@hapi/hapi')
  const server = Hapi.server()
  await server.register({ plugin: lib.hapiPlugin, options: { ...pluginOptions, ...options } })
  await server.initialize()
  return { locker: server.locker, stop: () => server.stop() }
}

/**
 * Registers hooks giving each test a fresh collection and a LockManager on it
 * (made the way `kind` says, one of MANAGER_KINDS): read `t.ctx` and
 * `t.locker` inside the tests.
 */
export function useLocker(prefix = 'locks', options, kind = 'new LockManager(collection)') {
  const t = {}
  beforeEach(async () => {
    t.ctx = await freshCollection(prefix)
    // Quiet unless the test brings a logger: the console default (warnings
    // and errors, as mongo-locks prints them) is tested in drop-in-runtime.test.mjs.
    const made = await MANAGER_KINDS[kind](t.ctx, options)
    t.locker = made.locker
    t.stop = made.stop
  })
  afterEach(async () => {
    await t.stop()
    await t.locker.close()
    await t.ctx.close()
  })
  return t
}

/**
 * A FerretDB of the test file's own: `t.client` on it, and
 * `t.commandsSent(fn)`, which runs `fn` and resolves to
 * `{ result, sent(command) }`: how many of each command the server was
 * sent meanwhile, from its own request counters (every client's, so no
 * other test's traffic may share the server). `postgresql`: on a
 * PostgreSQL cluster of its own (postgres.mjs), not SQLite.
 */
export function usePrivateServer({ postgresql = false } = {}) {
  const t = {}
  beforeAll(async () => {
    if (postgresql) t.postgres = await startPostgres()
    t.server = await startFerretDB(t.postgres ? { postgresql: t.postgres.url } : {})
    t.client = await MongoClient.connect(t.server.url)
    t.counter = await serverCommandCounter({ url: t.server.url, metricsUrl: t.server.metricsUrl })
  }, 60_000)
  afterAll(async () => {
    await t.counter?.close()
    await t.client?.close()
    await t.server?.stop()
    await t.postgres?.stop()
  })
  t.commandsSent = async (fn) => {
    const before = await t.counter.read()
    const result = await fn()
    const after = await t.counter.read()
    return { result, sent: (command) => (after[command] ?? 0) - (before[command] ?? 0) }
  }
  return t
}

/**
 * Starts `node file args…` and lets the test wait for the JSON lines it
 * prints (`{ "event": name, … }`), while it runs. `exited` resolves to
 * `{ code, signal, stdout, stderr }`.
 */
export function startNode(file, args = [], { node = process.execPath, env = {}, timeoutMs = 60_000 } = {}) {
  const child = spawn(node, [file, ...args], { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d) => { stdout += d })
  child.stderr.on('data', (d) => { stderr += d })
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal, stdout, stderr })))
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
  exited.then(() => clearTimeout(timer))
  const events = () => stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l))
  return {
    child,
    exited,
    events,
    /** The first event called `name`, waiting up to `ms` for it. */
    async waitFor(name, ms = 20_000) {
      const found = await eventually(() => events().find((e) => e.event === name) ?? (child.exitCode !== null ? 'exited' : null), ms, 20)
      if (!found || found === 'exited') throw new Error(`${path.basename(file)} did not print ${name}\nstdout: ${stdout}\nstderr: ${stderr}`)
      return found
    },
  }
}

/**
 * libfaketime's preload library, the thread-safe build: .tools/faketime's
 * (scripts/install-faketime.sh), else the system's; null without it.
 */
export { faketimeLibrary }


/**
 * `describe` for a test file whose guarantee needs libfaketime
 * (`testFileUrl`: its import.meta.url); the file's line in NOT_CHECKED_DIR
 * is removed. Without libfaketime, under CI: an error (CI must check the
 * guarantee). Elsewhere: one skipped test titled "NOT CHECKED: <guarantee> —
 * run: bash scripts/install-faketime.sh", the same line (with the file's
 * name) in NOT_CHECKED_DIR/<file>.txt, and in place of `describe` a function
 * that registers nothing, so that skipped test is the file's only one. One
 * summary file per test file: the runs on two Nodes rewrite it, and test
 * files running in parallel never write the same one.
 */
export function describeWithFaketime(testFileUrl, guarantee) {
  return describeWithTool(testFileUrl, guarantee, { tool: 'libfaketime', found: Boolean(faketimeLibrary()), install: FAKETIME_INSTALL })
}

/**
 * `describe` for a test file whose guarantee needs `tool` (`found`: whether
 * this machine has it), as `describeWithFaketime` says: without it, an
 * error under CI, elsewhere one NOT CHECKED line naming `install`, the
 * command that brings it.
 */
export function describeWithTool(testFileUrl, guarantee, { tool, found, install }) {
  const file = path.basename(fileURLToPath(testFileUrl))
  const summary = path.join(NOT_CHECKED_DIR, `${file}.txt`)
  if (found) {
    rmSync(summary, { force: true })
    return describe
  }
  if (process.env.CI) throw new Error(`${tool} is missing (${guarantee}): ${install}`)
  it.skip(`NOT CHECKED: ${guarantee} — run: ${install}`, () => {})
  mkdirSync(NOT_CHECKED_DIR, { recursive: true })
  writeFileSync(summary, `NOT CHECKED: ${guarantee} (${path.relative(root, fileURLToPath(testFileUrl))}) — run: ${install}\n`)
  return () => {}
}

/**
 * The environment that puts a child's wall clock under the control of
 * `file` (libfaketime's timestamp file, re-read on every call, so writing
 * "+5s" to it steps the clock of the running process). Its monotonic
 * clocks are left alone, as a real clock step leaves them.
 */
export function steppedClockEnv(file) {
  return {
    LD_PRELOAD: faketimeLibrary(),
    FAKETIME_TIMESTAMP_FILE: file,
    FAKETIME_NO_CACHE: '1',
    FAKETIME_DONT_FAKE_MONOTONIC: '1',
  }
}
