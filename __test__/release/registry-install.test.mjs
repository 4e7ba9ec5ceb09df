// Installing as a user does: a local npm registry (Verdaccio, see
// __test__/support/local-registry.mjs) gets the release the napi-rs way — the Linux
// platform packages through `napi artifacts` and `napi prepublish`, then the
// main package — and fresh applications outside the repository, with no Rust
// and no Go on their PATH, `npm install mongodb mongo-locks-native` (and the
// alias `mongo-locks@npm:mongo-locks-native`) from it and use it from
// CommonJS and ESM against the test server. npm picks the platform package
// by os, cpu and libc; the loader finds it. That covers the main package's
// files list, the optional-dependency resolution and the loader together:
// - x64 glibc: this machine's npm; the Node running the tests and Node 24;
// - x64 musl: the musl Node's own npm in an Alpine view of this machine;
// - arm64 glibc and musl: npm --cpu=arm64 --libc=…, run under qemu-user;
// - musl and arm64 on the Node line of the tests (__test__/support/platforms.mjs:
//   Node 22 when vitest runs on Node 22, else Node 24);
// - installed with --omit=optional: the loader's error, as a user sees it.
import { describe, it, expect, beforeAll, afterAll, beforeEach, afterEach } from 'vitest'
import { spawn } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, realpathSync, rmSync, writeFileSync, copyFileSync, existsSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { root, runNode, node24, freshCollection, mongoUrl } from '../support/suite.mjs'
import { LINUX_TARGETS, runtimeFor, platformReadiness, userPath, commandsOn } from '../support/platforms.mjs'
import { startRegistry, publishRelease } from '../support/local-registry.mjs'
import { ARTIFACTS_DIR } from '../../scripts/build-platforms.mjs'

const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8'))
const MONGODB_VERSION = JSON.parse(readFileSync(path.join(root, 'node_modules', 'mongodb', 'package.json'), 'utf8')).version
const FIXTURE = path.join(root, '__test__', 'fixtures', 'platform-smoke.cjs')
const ready = platformReadiness('registry-install.test.mjs', { registry: true })
const PLATFORM_PACKAGES = LINUX_TARGETS.map((t) => `${pkg.name}-${t.abi}`)

const esmCheck = (name) => `
import { LockManager } from ${JSON.stringify(name)}
import lib from ${JSON.stringify(name)}
import { MongoClient } from 'mongodb'
const [uri, dbName, collectionName] = process.argv.slice(2)
const client = await MongoClient.connect(uri)
const collection = client.db(dbName).collection(collectionName)
const a = new LockManager(collection, { logger: false })
const b = new lib.LockManager(collection, { logger: false })
const held = await a.lock('esm-installed')
const refused = await b.lock('esm-installed')
await held.free()
const after = await b.lock('esm-installed')
await after.free()
await a.close(); await b.close(); await client.close()
console.log(JSON.stringify({ resolved: import.meta.resolve(${JSON.stringify(name)}), held: Boolean(held), refused: refused === null, after: Boolean(after) }))
`

/** Runs a command to completion; resolves to { code, stdout, stderr }. */
function exec(cmd, args, { cwd, env }) {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => { stdout += d })
    child.stderr.on('data', (d) => { stderr += d })
    child.on('error', (err) => resolve({ code: err.code, stdout, stderr: `${stderr}${err.message}` }))
    child.on('exit', (code, signal) => resolve({ code: code ?? signal, stdout, stderr }))
  })
}

/**
 * npm's CLI script, the one this machine's `npm` runs (npm sets npm_execpath
 * under `npm test`; else the `npm` on PATH). It is run by the Node running
 * the tests: Node 24 from the `node` package has no npm of its own.
 */
function hostNpmCli() {
  if (process.env.npm_execpath && /npm-cli\.js$/.test(process.env.npm_execpath)) return process.env.npm_execpath
  for (const dir of (process.env.PATH || '').split(path.delimiter)) {
    const candidate = path.join(dir, 'npm')
    if (existsSync(candidate)) {
      const real = realpathSync(candidate)
      if (real.endsWith('.js')) return real
      const cli = path.join(path.dirname(real), '..', 'lib', 'node_modules', 'npm', 'bin', 'npm-cli.js')
      if (existsSync(cli)) return cli
    }
  }
  throw new Error('npm not found on PATH')
}

describe.runIf(ready)('install from a registry, as a user does', () => {
  let registry, tmp, published, cache
  const installed = {}

  /**
   * A fresh application folder: `npm install <specs>` from the registry,
   * with this machine's npm run by the Node running the tests, or with the
   * runtime's own (`npmCli`, run by its `node` and `prefix`), and a PATH
   * holding that Node and the system folders only.
   */
  async function install(name, specs, { npmArgs = [], runtime = null } = {}) {
    const app = path.join(tmp, name)
    mkdirSync(app)
    writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: `app-${name}`, version: '1.0.0', private: true }))
    const binDir = runtime?.binDir ?? path.dirname(process.execPath)
    const PATH = userPath(binDir)
    const env = { ...process.env, ...registry.env, PATH, npm_config_cache: cache, npm_config_loglevel: 'warn' }
    for (const k of Object.keys(env)) if (/^(CARGO|RUSTUP|RUSTC|GO)/.test(k)) delete env[k]
    const npmArgsAll = ['install', ...specs, '--no-audit', '--no-fund', ...npmArgs]
    const run = runtime
      ? await exec(runtime.node, [...runtime.prefix, runtime.npmCli, ...npmArgsAll], { cwd: app, env })
      : await exec(process.execPath, [hostNpmCli(), ...npmArgsAll], { cwd: app, env })
    if (run.code !== 0) throw new Error(`npm install in ${name} failed (${run.code}):\n${run.stdout}\n${run.stderr}`)
    copyFileSync(FIXTURE, path.join(app, 'smoke.cjs'))
    installed[name] = { app, PATH, output: run.stdout + run.stderr }
    return installed[name]
  }

  const platformsIn = (app) => readdirSync(path.join(app, 'node_modules')).filter((d) => d.startsWith(`${pkg.name}-`)).sort()

  beforeAll(async () => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'mongo-locks-install-'))
    cache = path.join(tmp, 'npm-cache')
    registry = await startRegistry()
    published = await publishRelease(registry, { artifactsDir: ARTIFACTS_DIR, targets: LINUX_TARGETS.map((t) => t.triple) })
    await Promise.all([
      install('glibc', [`mongodb@${MONGODB_VERSION}`, pkg.name]),
      install('alias', [`mongodb@${MONGODB_VERSION}`, `mongo-locks@npm:${pkg.name}`]),
      install('omit-optional', [`mongodb@${MONGODB_VERSION}`, pkg.name], { npmArgs: ['--omit=optional'] }),
      install('arm64-glibc', [`mongodb@${MONGODB_VERSION}`, pkg.name], { npmArgs: ['--os=linux', '--cpu=arm64', '--libc=glibc'] }),
      install('arm64-musl', [`mongodb@${MONGODB_VERSION}`, pkg.name], { npmArgs: ['--os=linux', '--cpu=arm64', '--libc=musl'] }),
    ])
    // npm itself decides "musl" here, from Alpine's ldd in the musl view.
    await install('musl', [`mongodb@${MONGODB_VERSION}`, pkg.name], { runtime: runtimeFor('linux-x64-musl') })
  }, 600_000)

  afterAll(async () => {
    await registry?.stop()
    if (tmp) rmSync(tmp, { recursive: true, force: true })
  })

  it('the release is published the napi-rs way: exact-version optional dependencies, no binary in the main package', async () => {
    // What `napi prepublish` wrote for the targets built here…
    expect(published.prepared).toEqual(Object.fromEntries(PLATFORM_PACKAGES.map((n) => [n, pkg.version])))
    const manifest = await (await fetch(`${registry.url}${pkg.name}`)).json()
    const latest = manifest.versions[manifest['dist-tags'].latest]
    // …and the main package users get lists all seven platforms, exactly this version.
    expect(latest.optionalDependencies).toEqual({
      [`${pkg.name}-linux-x64-gnu`]: pkg.version,
      [`${pkg.name}-linux-x64-musl`]: pkg.version,
      [`${pkg.name}-linux-arm64-gnu`]: pkg.version,
      [`${pkg.name}-linux-arm64-musl`]: pkg.version,
      [`${pkg.name}-darwin-x64`]: pkg.version,
      [`${pkg.name}-darwin-arm64`]: pkg.version,
      [`${pkg.name}-win32-x64-msvc`]: pkg.version,
    })
    expect(latest.peerDependencies).toEqual({ mongodb: '>=4' })
    for (const t of LINUX_TARGETS) {
      const p = await (await fetch(`${registry.url}${pkg.name}-${t.abi}`)).json()
      expect(p.versions[pkg.version]).toMatchObject({ os: ['linux'], cpu: [t.arch], libc: [t.libc], main: `${pkg.napi.binaryName}.${t.abi}.node` })
    }
    const main = readdirSync(path.join(installed.glibc.app, 'node_modules', pkg.name)).sort()
    expect(main.filter((f) => f.endsWith('.node'))).toEqual([])
    expect(main).toEqual(expect.arrayContaining(['binding.js', 'lib', 'index.js', 'index.d.ts', 'package.json']))
    expect(readdirSync(path.join(installed.glibc.app, 'node_modules', pkg.name, 'lib'))).toEqual(expect.arrayContaining(['native-loader.js', 'hapi.js', 'hapi.d.ts', 'rules.js', 'testing.js']))
  })

  it('installs with no Rust and no Go on the PATH, outside the repository', () => {
    for (const { app, PATH } of Object.values(installed)) {
      expect(commandsOn(PATH, ['cargo', 'rustc', 'go'])).toEqual([])
      expect(path.relative(root, app).startsWith('..')).toBe(true)
    }
  })

  it('npm picks the platform package by os, cpu and libc', () => {
    expect(platformsIn(installed.glibc.app)).toEqual([`${pkg.name}-linux-x64-gnu`])
    expect(platformsIn(installed.alias.app)).toEqual([`${pkg.name}-linux-x64-gnu`])
    expect(platformsIn(installed.musl.app)).toEqual([`${pkg.name}-linux-x64-musl`])
    expect(platformsIn(installed['arm64-glibc'].app)).toEqual([`${pkg.name}-linux-arm64-gnu`])
    expect(platformsIn(installed['arm64-musl'].app)).toEqual([`${pkg.name}-linux-arm64-musl`])
    expect(platformsIn(installed['omit-optional'].app)).toEqual([])
    expect(existsSync(path.join(installed.alias.app, 'node_modules', 'mongo-locks', 'package.json'))).toBe(true)
  })

  describe('against the test server', () => {
    let ctx
    beforeEach(async () => { ctx = await freshCollection('installed') })
    afterEach(async () => { await ctx.close() })

    const smoke = async (name, moduleName, runtime, abi) => {
      const { app } = installed[name]
      const run = await runNode(path.join(app, 'smoke.cjs'), [moduleName, mongoUrl(), ctx.db.databaseName, ctx.name],
        { node: runtime.node, prefix: runtime.prefix, timeoutMs: 120_000 })
      expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(0)
      const seen = JSON.parse(run.stdout.trim().split('\n').at(-1))
      expect(seen.loaded).toEqual([path.join(app, 'node_modules', `${pkg.name}-${abi}`, `${pkg.napi.binaryName}.${abi}.node`)])
      expect(seen.resolved).toBe(path.join(app, 'node_modules', moduleName, 'index.js'))
      expect(seen).toMatchObject({ held: true, refused: true, afterFree: true, handedOver: true, documentsLeft: 0 })
    }
    const esm = async (name, moduleName, node) => {
      const { app } = installed[name]
      writeFileSync(path.join(app, 'check.mjs'), esmCheck(moduleName))
      const run = await runNode(path.join(app, 'check.mjs'), [mongoUrl(), ctx.db.databaseName, ctx.name], { node })
      expect(run.code, run.stderr).toBe(0)
      const seen = JSON.parse(run.stdout.trim().split('\n').at(-1))
      expect(seen).toEqual({ resolved: `file://${path.join(app, 'node_modules', moduleName, 'index.js')}`, held: true, refused: true, after: true })
    }

    for (const [label, node] of [['this Node', process.execPath], ['Node 24', node24]]) {
      it(`x64 glibc, ${label}: require('${pkg.name}')`, () => smoke('glibc', pkg.name, { node, prefix: [] }, 'linux-x64-gnu'))
      it(`x64 glibc, ${label}: import from '${pkg.name}'`, () => esm('glibc', pkg.name, node))
      it(`x64 glibc, ${label}: require('mongo-locks'), the alias`, () => smoke('alias', 'mongo-locks', { node, prefix: [] }, 'linux-x64-gnu'))
      it(`x64 glibc, ${label}: import from 'mongo-locks', the alias`, () => esm('alias', 'mongo-locks', node))
    }
    for (const [name, abi] of [['musl', 'linux-x64-musl'], ['arm64-glibc', 'linux-arm64-gnu'], ['arm64-musl', 'linux-arm64-musl']]) {
      const runtime = runtimeFor(abi)
      it(`${runtime.label}: require()`, () => smoke(name, pkg.name, runtime, abi), 120_000)
    }
  })

  it('installed with --omit=optional, the package says what is missing and what to do', async () => {
    const { app } = installed['omit-optional']
    writeFileSync(path.join(app, 'fail.cjs'), `try { require(${JSON.stringify(pkg.name)}) } catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })) }`)
    const run = await runNode(path.join(app, 'fail.cjs'))
    const seen = JSON.parse(run.stdout.trim().split('\n').at(-1))
    expect(seen.code).toBe('ERR_MONGO_LOCKS_NATIVE_BINDING')
    expect(seen.message).toContain('Detected:   linux x64, glibc')
    expect(seen.message).toContain(`the package ${pkg.name}-linux-x64-gnu@${pkg.version}: not installed`)
    expect(seen.message).toContain('Do not omit optional dependencies')
  })
})
