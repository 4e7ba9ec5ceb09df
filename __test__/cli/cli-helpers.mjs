// Shared by the tests of the command-line tool (bin/mongo-locks-native.js,
// `npx mongo-locks-native list|show|watch|unlock`): running it as a child
// process against the server under test, lock documents in the shape this
// package writes, and a fresh collection with managers per test.
import { expect, beforeEach, afterEach } from 'vitest'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { ObjectId } from 'mongodb'
import { root, lib, mongoUrl, freshCollection, runNode } from '../support/suite.mjs'

export const CLI = path.join(root, 'bin', 'mongo-locks-native.js')
export const HOLDER = path.join(root, '__test__', 'fixtures', 'cli-holder.mjs')
export const VERSION = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')).version
export const UNKNOWN = 'unknown (mongo-locks or older)'

/** Runs the CLI with MONGO_URL set; `target` adds --db and --collection of a fresh collection. */
export function cli(args, { target, env = {}, timeoutMs = 30_000 } = {}) {
  const where = target ? ['--db', target.db.databaseName, '--collection', target.name] : []
  return runNode(CLI, [...args, ...where], { env: { MONGO_URL: mongoUrl(), ...env }, timeoutMs })
}

/** The one line a failing command prints on stderr. */
export function oneErrorLine(run) {
  const lines = run.stderr.split('\n').filter((l) => l !== '')
  expect(lines, run.stderr).toHaveLength(1)
  expect(lines[0]).toMatch(/^mongo-locks-native: /)
  return lines[0]
}

/** A lock document in the shape this package writes, `holder` included, inserted as is. */
export function holderDoc(action, { createdAgoMs, refreshedAgoMs, expiresInMs, fencingToken, holder }) {
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
export function withManagers(prefix) {
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

export const BILLING = { host: 'web-3', pid: 4711, app: 'billing-api', manager: '6b0a37da34c6b4700971f531' }

/** What the CLI shows as the holder of a document. */
export const holderText = (h) => (!h ? UNKNOWN : h.app ? `${h.app} on ${h.host} (pid ${h.pid})` : `${h.host} (pid ${h.pid})`)
