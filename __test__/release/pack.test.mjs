// The package as npm publishes it, the napi-rs way: `npm pack` of the main
// package (no binary in it) and of this machine's platform package
// (npm/linux-x64-gnu/ with the addon `npm test` just built, as `napi
// artifacts` fills it in), both installed into a fresh project outside the
// repo (no Rust there), then used by name from there, in both module systems.
// registry-install.test.mjs installs the release binaries of all four Linux
// platforms from a registry, through npm's own platform selection.
import { describe, it, expect, beforeAll, afterAll, beforeEach, afterEach } from 'vitest'
import { spawnSync } from 'node:child_process'
import { copyFileSync, mkdtempSync, mkdirSync, rmSync, writeFileSync, readdirSync, readFileSync, statSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { root, runNode, node24, freshCollection, mongoUrl } from '../support/suite.mjs'

/** Runs npm (the one next to this Node) and returns its stdout; throws with its output on failure. */
function npm(args, cwd) {
  const run = spawnSync('npm', args, { cwd, encoding: 'utf8', env: { ...process.env, npm_config_update_notifier: 'false' } })
  if (run.status !== 0) throw new Error(`npm ${args.join(' ')} failed (${run.status}):\n${run.stdout}\n${run.stderr}`)
  return run.stdout
}

// Exactly what a user installs: anything else (sources, tests, build output) is a leak.
const EXPECTED_FILES = [
  'LICENSE',
  'README.md',
  'bin/cli/args.js',
  'bin/cli/connection.js',
  'bin/cli/errors.js',
  'bin/cli/format.js',
  'bin/cli/keys.js',
  'bin/cli/list.js',
  'bin/cli/read.js',
  'bin/cli/records.js',
  'bin/cli/show.js',
  'bin/cli/unlock.js',
  'bin/cli/usage.js',
  'bin/cli/watch.js',
  'bin/mongo-locks-native.js',
  'binding.js',
  'index.d.ts',
  'index.js',
  'lib/app-mongodb.js',
  'lib/aws-credentials.js',
  'lib/client-settings.js',
  'lib/errors.js',
  'lib/hapi.d.ts',
  'lib/hapi.js',
  'lib/keys.js',
  'lib/manager.js',
  'lib/metrics.js',
  'lib/native-loader.js',
  'lib/once.js',
  'lib/primitives.js',
  'lib/rules.js',
  'lib/testing.d.ts',
  'lib/testing.js',
  'lib/with-lock.js',
  'package.json',
]
// The platform package of this machine: the addon and nothing else.
const PLATFORM = 'linux-x64-gnu'
const BINARY = `mongo-locks-native.${PLATFORM}.node`
const EXPECTED_PLATFORM_FILES = ['README.md', BINARY, 'package.json']

const NAMES = ['LockManager', 'Lock', 'MongoLocksError', 'acquireLock', 'requireLock']
const CJS_CHECK = `
const m = require('mongo-locks-native')
const { plugin } = require('mongo-locks-native/hapi')
const testing = require('mongo-locks-native/testing')
const pkg = require('mongo-locks-native/package.json')
console.log(JSON.stringify({
  path: require.resolve('mongo-locks-native'),
  testing: [typeof testing.createTestLocker, testing.LockLostError === m.LockLostError],
  exports: ${JSON.stringify(NAMES)}.map((n) => typeof m[n]),
  plugin: [plugin.name, plugin.version === pkg.version, typeof plugin.register],
  binary: process.report.getReport().sharedObjects.filter((f) => f.endsWith('.node')),
}))
`
const ESM_CHECK = `
import { ${NAMES.join(', ')} } from 'mongo-locks-native'
import lib from 'mongo-locks-native'
import { plugin } from 'mongo-locks-native/hapi'
import { createTestLocker } from 'mongo-locks-native/testing'
console.log(JSON.stringify({
  path: import.meta.resolve('mongo-locks-native'),
  testing: typeof createTestLocker,
  exports: [${NAMES.join(', ')}].map((v) => typeof v),
  sameAsRequire: lib.LockManager === LockManager,
  plugin: plugin.name,
}))
`
// Takes a lock in the test's collection and exits holding it, so the test
// can find the document the installed copy wrote.
const LOCK_CHECK = `
const { LockManager } = require('mongo-locks-native')
const [uri, dbName, collectionName] = process.argv.slice(2)
const locker = new LockManager({ dbName, collectionName }, { uri })
;(async () => {
  const lock = await locker.lock('installed-from-tarball')
  const again = await locker.lock('installed-from-tarball')
  console.log(JSON.stringify({ locked: lock.locked, id: lock.id, again }))
  process.exit(0)
})().catch((err) => { console.error(err); process.exit(1) })
`

// A TypeScript user of the main entry: @types/node (the repo's, as any Node
// backend has it), no @hapi/hapi, skipLibCheck off: the shipped index.d.ts
// must not need anything else.
const TS_CHECK = `
import { LockManager, type Lock } from 'mongo-locks-native'
export async function use(locker: LockManager): Promise<boolean> {
  await using lock: Lock | null = await locker.lock('k')
  return lock?.locked ?? false
}
`
// A TypeScript user of the test locker's entry, under nodenext (package.json
// "exports") and under node10 resolution (which reads "typesVersions").
const TS_TESTING_CHECK = `
import { createTestLocker, type TestLocker } from 'mongo-locks-native/testing'
export const locker: TestLocker = createTestLocker({ ttlMs: 6000 })
export const held: readonly unknown[] = locker.heldKeys
`
const TS_CONFIG = {
  compilerOptions: {
    strict: true, noEmit: true, target: 'ES2022', module: 'nodenext', lib: ['es2022', 'esnext.disposable'], skipLibCheck: false,
    typeRoots: [path.join(root, 'node_modules', '@types')], types: ['node'],
  },
  files: ['use.ts'],
}

describe('npm package', () => {
  let tmp, tarball, packed, platformPacked, platformTarball, project

  beforeAll(() => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'mongo-locks-native-pack-'))
    const [info] = JSON.parse(npm(['pack', '--json', '--pack-destination', tmp], root))
    packed = info
    tarball = path.join(tmp, info.filename)
    const platformDir = path.join(tmp, PLATFORM)
    mkdirSync(platformDir)
    for (const f of ['package.json', 'README.md']) copyFileSync(path.join(root, 'npm', PLATFORM, f), path.join(platformDir, f))
    copyFileSync(path.join(root, BINARY), path.join(platformDir, BINARY))
    ;[platformPacked] = JSON.parse(npm(['pack', '--json', '--pack-destination', tmp], platformDir))
    platformTarball = path.join(tmp, platformPacked.filename)
    project = path.join(tmp, 'app')
    mkdirSync(project)
    npm(['init', '-y'], project)
    // An application has its own `mongodb` (our peer dependency, as it is
    // mongo-locks'): the version this repository tests with.
    const { version } = JSON.parse(readFileSync(path.join(root, 'node_modules', 'mongodb', 'package.json'), 'utf8'))
    npm(['install', `mongodb@${version}`, tarball, platformTarball, '--no-audit', '--no-fund', '--prefer-offline'], project)
    writeFileSync(path.join(project, 'check.cjs'), CJS_CHECK)
    writeFileSync(path.join(project, 'check.mjs'), ESM_CHECK)
    writeFileSync(path.join(project, 'lock.cjs'), LOCK_CHECK)
    writeFileSync(path.join(project, 'use.ts'), TS_CHECK)
    writeFileSync(path.join(project, 'tsconfig.json'), JSON.stringify(TS_CONFIG))
    writeFileSync(path.join(project, 'testing.ts'), TS_TESTING_CHECK)
    for (const [name, resolution] of [['nodenext', { module: 'nodenext' }], ['node10', { module: 'commonjs', moduleResolution: 'node10' }]]) {
      const options = { ...TS_CONFIG.compilerOptions, ...resolution }
      writeFileSync(path.join(project, `tsconfig.testing-${name}.json`), JSON.stringify({ ...TS_CONFIG, compilerOptions: options, files: ['testing.ts'] }))
    }
  }, 120_000)

  afterAll(() => {
    if (tmp) rmSync(tmp, { recursive: true, force: true })
  })

  it('contains exactly the runtime files, and the platform package only the addon', () => {
    expect(packed.name).toBe('mongo-locks-native')
    expect(packed.files.map((f) => f.path).sort()).toEqual(EXPECTED_FILES)
    expect(platformPacked.name).toBe(`mongo-locks-native-${PLATFORM}`)
    expect(platformPacked.version).toBe(packed.version)
    expect(platformPacked.files.map((f) => f.path).sort()).toEqual(EXPECTED_PLATFORM_FILES)
  })

  it('installs outside the repo with no Rust build', () => {
    expect(path.relative(root, project).startsWith('..')).toBe(true)
    const dir = path.join(project, 'node_modules', 'mongo-locks-native')
    const installed = readdirSync(dir, { recursive: true }).filter((f) => statSync(path.join(dir, f)).isFile()).sort()
    expect(installed).toEqual(EXPECTED_FILES)
    expect(readdirSync(path.join(project, 'node_modules', `mongo-locks-native-${PLATFORM}`)).sort()).toEqual(EXPECTED_PLATFORM_FILES)
  })

  for (const [label, node] of [['this Node', process.execPath], ['Node 24', node24]]) {
    it(`loads with require() on ${label}, from the installed copy`, async () => {
      const run = await runNode(path.join(project, 'check.cjs'), [], { node })
      expect(run.code, run.stderr).toBe(0)
      const seen = JSON.parse(run.stdout)
      expect(seen.path).toBe(path.join(project, 'node_modules', 'mongo-locks-native', 'index.js'))
      expect(seen.exports).toEqual(NAMES.map(() => 'function'))
      expect(seen.plugin).toEqual(['mongo-locks-native', true, 'function'])
      expect(seen.testing).toEqual(['function', true])
      // The addon comes from the platform package npm installed beside it.
      expect(seen.binary).toEqual([path.join(project, 'node_modules', `mongo-locks-native-${PLATFORM}`, BINARY)])
    })

    it(`loads with import on ${label}, from the installed copy`, async () => {
      const run = await runNode(path.join(project, 'check.mjs'), [], { node })
      expect(run.code, run.stderr).toBe(0)
      const seen = JSON.parse(run.stdout)
      expect(seen.path).toContain('/app/node_modules/mongo-locks-native/index.js')
      expect(seen).toMatchObject({ exports: NAMES.map(() => 'function'), sameAsRequire: true, plugin: 'mongo-locks-native', testing: 'function' })
    })
  }

  it('ships main-entry types that compile for a TypeScript user on their own', () => {
    const run = spawnSync(path.join(root, 'node_modules', '.bin', 'tsc'), ['-p', project], { cwd: project, encoding: 'utf8' })
    expect(`${run.stdout}${run.stderr}`).toBe('')
    expect(run.status).toBe(0)
  })

  it.each(['nodenext', 'node10'])('ships the test locker\'s types at mongo-locks-native/testing (%s resolution)', (name) => {
    const run = spawnSync(path.join(root, 'node_modules', '.bin', 'tsc'), ['-p', path.join(project, `tsconfig.testing-${name}.json`)], { cwd: project, encoding: 'utf8' })
    expect(`${run.stdout}${run.stderr}`).toBe('')
    expect(run.status).toBe(0)
  })

  describe('against the test server', () => {
    let ctx
    beforeEach(async () => { ctx = await freshCollection('pack') })
    afterEach(async () => { await ctx.close() })

    it('new LockManager(…) and lock() work from the installed copy', async () => {
      const run = await runNode(path.join(project, 'lock.cjs'), [mongoUrl(), ctx.db.databaseName, ctx.name])
      expect(run.code, run.stderr).toBe(0)
      const seen = JSON.parse(run.stdout)
      expect(seen).toMatchObject({ locked: true, again: null })
      const doc = await ctx.collection.findOne({ action: 'installed-from-tarball' })
      expect(doc._id.toHexString()).toBe(seen.id)
    })
  })
})
