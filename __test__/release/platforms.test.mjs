// The release binaries of the four Linux targets (cross-built once per CI run
// by scripts/build-platforms.mjs) and their npm packages:
// - each binary as a file: CPU, no interpreter, NEEDED libraries, the newest
//   glibc symbol version (the oldest glibc supported), stripped;
// - the platform packages under npm/ are what `napi create-npm-dirs` makes,
//   and binding.js looks for exactly those names;
// - each binary on its own platform, picked by the package's loader from
//   among all four: lock, contend, free against the test server (x64 natively,
//   musl in an Alpine view of this machine, arm64 under qemu-user);
// - the loader's error when no binary matches, on glibc, musl and arm64.
// macOS and Windows cannot run here: the release workflow builds and tests
// them on their own runners (see workflow.test.mjs).
import { describe, it, expect, beforeAll, afterAll, beforeEach, afterEach } from 'vitest'
import { spawnSync } from 'node:child_process'
import { cpSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync, copyFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { root, runNode, freshCollection, mongoUrl } from '../support/suite.mjs'
import { LINUX_TARGETS, artifactPath, runtimeFor, platformReadiness } from '../support/platforms.mjs'
import { inspectBinary, checkBinary, importedSymbols, exportedSymbols, GLIBC_FLOOR, macosCheckState, sourceFingerprint, buildEnv } from '../../scripts/build-platforms.mjs'
import { MUSL_X64, MUSL_ARM64_ROOT } from '../support/platforms.mjs'

const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8'))
const NAPI_CLI = path.join(root, 'node_modules', '@napi-rs', 'cli', 'dist', 'cli.js')
const FIXTURE = path.join(root, '__test__', 'fixtures', 'platform-smoke.cjs')
const ready = platformReadiness('platforms.test.mjs')

/** The files `npm pack` puts in the main package, relative to the root. */
function packedFiles() {
  const r = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: root, encoding: 'utf8' })
  if (r.status !== 0) throw new Error(r.stderr)
  return JSON.parse(r.stdout)[0].files.map((f) => f.path)
}

/**
 * node_modules as npm lays it out, by hand: the main package (its packed
 * files), the given platform packages (npm/<platform>/package.json and the
 * binary) and the repository's mongodb (the application's peer).
 */
function layout(dir, platforms) {
  const nm = path.join(dir, 'node_modules')
  const main = path.join(nm, pkg.name)
  for (const f of packedFiles()) {
    mkdirSync(path.dirname(path.join(main, f)), { recursive: true })
    copyFileSync(path.join(root, f), path.join(main, f))
  }
  for (const abi of platforms) {
    const dest = path.join(nm, `${pkg.name}-${abi}`)
    mkdirSync(dest, { recursive: true })
    copyFileSync(path.join(root, 'npm', abi, 'package.json'), path.join(dest, 'package.json'))
    const target = LINUX_TARGETS.find((t) => t.abi === abi)
    copyFileSync(artifactPath(target), path.join(dest, `${pkg.napi.binaryName}.${abi}.node`))
  }
  symlinkSync(path.join(root, 'node_modules', 'mongodb'), path.join(nm, 'mongodb'))
  copyFileSync(FIXTURE, path.join(dir, 'smoke.cjs'))
  return dir
}

describe('platform packages (npm/)', () => {
  it('are what `napi create-npm-dirs` makes for the configured targets', () => {
    const tmp = mkdtempSync(path.join(os.tmpdir(), 'mongo-locks-npm-dirs-'))
    try {
      copyFileSync(path.join(root, 'package.json'), path.join(tmp, 'package.json'))
      const r = spawnSync(process.execPath, [NAPI_CLI, 'create-npm-dirs', '--cwd', tmp], { encoding: 'utf8' })
      expect(r.status, r.stderr).toBe(0)
      const made = readdirSync(path.join(tmp, 'npm')).sort()
      expect(readdirSync(path.join(root, 'npm')).sort()).toEqual(made)
      for (const dir of made) {
        for (const file of readdirSync(path.join(tmp, 'npm', dir))) {
          expect(readFileSync(path.join(root, 'npm', dir, file), 'utf8'), `npm/${dir}/${file}`).toBe(readFileSync(path.join(tmp, 'npm', dir, file), 'utf8'))
        }
      }
    } finally {
      rmSync(tmp, { recursive: true, force: true })
    }
  })

  it('cover linux x64/arm64 × glibc/musl, macOS x64/arm64 and Windows x64, with os, cpu and libc', () => {
    const seen = readdirSync(path.join(root, 'npm')).map((dir) => JSON.parse(readFileSync(path.join(root, 'npm', dir, 'package.json'), 'utf8')))
    const byName = Object.fromEntries(seen.map((p) => [p.name, p]))
    const expected = {
      'linux-x64-gnu': [['linux'], ['x64'], ['glibc']],
      'linux-x64-musl': [['linux'], ['x64'], ['musl']],
      'linux-arm64-gnu': [['linux'], ['arm64'], ['glibc']],
      'linux-arm64-musl': [['linux'], ['arm64'], ['musl']],
      'darwin-x64': [['darwin'], ['x64'], undefined],
      'darwin-arm64': [['darwin'], ['arm64'], undefined],
      'win32-x64-msvc': [['win32'], ['x64'], undefined],
    }
    expect(Object.keys(byName).sort()).toEqual(Object.keys(expected).map((abi) => `${pkg.name}-${abi}`).sort())
    for (const [abi, [os_, cpu, libc]] of Object.entries(expected)) {
      const p = byName[`${pkg.name}-${abi}`]
      expect(p).toMatchObject({ version: pkg.version, os: os_, cpu, main: `${pkg.napi.binaryName}.${abi}.node`, files: [`${pkg.napi.binaryName}.${abi}.node`] })
      expect(p.libc).toEqual(libc)
    }
  })

  it('are the names binding.js requires, and the main package ships no binary of its own', () => {
    const binding = readFileSync(path.join(root, 'binding.js'), 'utf8')
    for (const dir of readdirSync(path.join(root, 'npm'))) {
      expect(binding).toContain(`require('${pkg.name}-${dir}')`)
      expect(binding).toContain(`require('./${pkg.napi.binaryName}.${dir}.node')`)
    }
    const files = packedFiles()
    expect(files.filter((f) => f.endsWith('.node'))).toEqual([])
    expect(files).toEqual(expect.arrayContaining(['binding.js', 'lib/native-loader.js', 'index.js']))
  })

  it('lib/manager.js loads the addon through native-loader.js (the clear error when no binary matches)', () => {
    const source = readFileSync(path.join(root, 'lib', 'manager.js'), 'utf8')
    expect(/require\(['"]\.\/native-loader\.js['"]\)/.test(source), "lib/manager.js must require('./native-loader.js'), not '../binding.js'").toBe(true)
  })
})

describe.runIf(ready)('release binaries (readelf)', () => {
  for (const t of LINUX_TARGETS) {
    it(`${t.abi}: ${t.machine}, no interpreter, ${t.libc} libraries only${t.libc === 'glibc' ? `, glibc ≤ ${GLIBC_FLOOR}` : ''}, stripped`, () => {
      const info = inspectBinary(artifactPath(t))
      const failed = checkBinary(t, info).filter(([, ok]) => !ok).map(([label, , detail]) => `${label}: ${detail}`)
      expect(failed).toEqual([])
      if (t.libc === 'glibc') expect(info.maxGlibc).toBe(GLIBC_FLOOR)
      else expect(info.needed).toContain('libc.so')
    })
  }
})

describe.runIf(ready)('macOS, which cannot be built here', () => {
  it('the crate type-checks for aarch64-apple-darwin (cargo-zigbuild check, with its C build scripts)', () => {
    const state = macosCheckState(sourceFingerprint(buildEnv()))
    expect(state.stamp).toMatchObject({ target: 'aarch64-apple-darwin', ok: true })
    expect(state.fresh).toBe(true)
  })
})

describe.runIf(ready)('the oldest musl: 1.2.3 (Alpine 3.17)', () => {
  const musl125 = {
    'linux-x64-musl': path.join(MUSL_X64, 'usr', 'lib', 'x86_64-linux-musl', 'libc.so'),
    'linux-arm64-musl': path.join(MUSL_ARM64_ROOT, 'usr', 'lib', 'aarch64-linux-musl', 'libc.so'),
  }
  for (const t of LINUX_TARGETS.filter((t) => t.libc === 'musl')) {
    it(`${t.abi} imports only symbols musl 1.2.5 exports (Alpine 3.20 and later)`, () => {
      const libc = exportedSymbols(musl125[t.abi])
      expect(importedSymbols(artifactPath(t)).filter((s) => !libc.has(s))).toEqual([])
    })
  }

  it('linux-x64-musl imports only symbols musl 1.2.3 exports, and loads there (dlopen, RTLD_NOW)', () => {
    // Debian bookworm's musl is 1.2.3, Alpine 3.17's. No Node runs on it here
    // (the musl Node's libraries need 1.2.4's DT_RELR), so a C probe built
    // with musl-gcc loads the binary, every symbol bound, and finds the
    // Node-API entry point.
    const binary = artifactPath(LINUX_TARGETS.find((t) => t.abi === 'linux-x64-musl'))
    const libc = exportedSymbols('/lib/x86_64-linux-musl/libc.so')
    expect(importedSymbols(binary).filter((s) => !libc.has(s))).toEqual([])
    const tmp = mkdtempSync(path.join(os.tmpdir(), 'mongo-locks-musl-probe-'))
    try {
      writeFileSync(path.join(tmp, 'probe.c'), [
        '#include <dlfcn.h>',
        '#include <stdio.h>',
        'int main(int argc, char **argv) {',
        '  void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);',
        '  if (!h) { printf("error: %s\\n", dlerror()); return 1; }',
        '  printf("loaded, entry point %s\\n", dlsym(h, "napi_register_module_v1") ? "found" : "missing");',
        '  return 0;',
        '}',
      ].join('\n'))
      const cc = spawnSync('musl-gcc', ['-O1', '-o', path.join(tmp, 'probe'), path.join(tmp, 'probe.c')], { encoding: 'utf8' })
      expect(cc.status, cc.stderr).toBe(0)
      const run = spawnSync(path.join(tmp, 'probe'), [binary], { encoding: 'utf8' })
      expect(`${run.stdout}${run.stderr}`.trim()).toBe('loaded, entry point found')
      expect(run.status).toBe(0)
    } finally {
      rmSync(tmp, { recursive: true, force: true })
    }
  })
})

describe.runIf(ready)('each binary on its platform, picked by the loader', () => {
  let tmp, app, ctx
  beforeAll(() => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'mongo-locks-platforms-'))
    // All four platform packages side by side (as `npm install --force` or
    // yarn's supportedArchitectures would leave them): the loader must pick.
    app = layout(path.join(tmp, 'app'), LINUX_TARGETS.map((t) => t.abi))
  })
  afterAll(() => { if (tmp) rmSync(tmp, { recursive: true, force: true }) })
  beforeEach(async () => { ctx = await freshCollection('platform') })
  afterEach(async () => { await ctx.close() })

  const cases = [
    ...LINUX_TARGETS.map((t) => [t, runtimeFor(t.abi)]),
    [LINUX_TARGETS[0], { label: 'x64 glibc, this Node', node: process.execPath, prefix: [] }],
  ]
  for (const [t, runtime] of cases) {
    it(`${t.abi} on ${runtime.label}: lock, contend, free`, async () => {
      const run = await runNode(path.join(app, 'smoke.cjs'), [pkg.name, mongoUrl(), ctx.db.databaseName, ctx.name], { node: runtime.node, prefix: runtime.prefix, timeoutMs: 120_000 })
      expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(0)
      const seen = JSON.parse(run.stdout.trim().split('\n').at(-1))
      expect(seen.arch).toBe(t.arch)
      expect(seen.glibc === null).toBe(t.libc === 'musl')
      expect(seen.loaded).toEqual([path.join(app, 'node_modules', `${pkg.name}-${t.abi}`, `${pkg.napi.binaryName}.${t.abi}.node`)])
      expect(seen).toMatchObject({ held: true, refused: true, afterFree: true, handedOver: true, documentsLeft: 0 })
    }, 180_000)
  }
})

describe.runIf(ready)('when no binary matches: the loader says what it saw, looked for, and what to do', () => {
  let tmp, app
  const CHECK = `
try {
  require(require('node:path').join(__dirname, 'node_modules', ${JSON.stringify(pkg.name)}, 'lib', 'native-loader.js'))
  console.log(JSON.stringify({ loaded: true }))
} catch (e) {
  console.log(JSON.stringify({ code: e.code, message: e.message, lookedFor: e.lookedFor, detected: e.detected, cause: e.cause && e.cause.message }))
}
`
  beforeAll(() => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'mongo-locks-nobinary-'))
    app = layout(path.join(tmp, 'app'), []) // the main package alone: as with npm --omit=optional
    writeFileSync(path.join(app, 'check.cjs'), CHECK)
  })
  afterAll(() => { if (tmp) rmSync(tmp, { recursive: true, force: true }) })

  const cases = [
    ['linux-x64-gnu', 'linux x64, glibc', { label: 'x64 glibc, this Node', node: process.execPath, prefix: [] }],
    ['linux-x64-musl', 'linux x64, musl libc', runtimeFor('linux-x64-musl')],
    ['linux-arm64-gnu', 'linux arm64, glibc', runtimeFor('linux-arm64-gnu')],
    ['linux-arm64-musl', 'linux arm64, musl libc', runtimeFor('linux-arm64-musl')],
  ]
  for (const [abi, detected, runtime] of cases) {
    it(`on ${runtime.label}`, async () => {
      const run = await runNode(path.join(app, 'check.cjs'), [], { node: runtime.node, prefix: runtime.prefix, timeoutMs: 120_000 })
      expect(run.code, run.stderr).toBe(0)
      const seen = JSON.parse(run.stdout.trim().split('\n').at(-1))
      expect(seen.code).toBe('ERR_MONGO_LOCKS_NATIVE_BINDING')
      expect(seen.lookedFor).toEqual([`${pkg.name}-${abi}`])
      expect(seen.message).toContain(`could not load its native addon for ${abi}`)
      expect(seen.message).toContain(`Detected:   ${detected}`)
      expect(seen.message).toContain(`the package ${pkg.name}-${abi}@${pkg.version}: not installed`)
      expect(seen.message).toContain(`the file ${pkg.napi.binaryName}.${abi}.node next to binding.js: not there`)
      expect(seen.message).toContain('Published:  linux-x64-gnu, linux-x64-musl, linux-arm64-gnu, linux-arm64-musl, darwin-x64, darwin-arm64, win32-x64-msvc')
      expect(seen.message).toContain(`npm did not install the optional dependency ${pkg.name}-${abi}`)
      expect(seen.message).toContain(`npm install ${pkg.name}-${abi}@${pkg.version}`)
      expect(seen.cause).toMatch(/^Cannot find native binding/)
    }, 180_000)
  }

  it('names a binary copied from another CPU', async () => {
    const dir = path.join(tmp, 'wrong-cpu')
    cpSync(app, dir, { recursive: true, verbatimSymlinks: true })
    const dest = path.join(dir, 'node_modules', `${pkg.name}-linux-x64-gnu`)
    mkdirSync(dest)
    copyFileSync(path.join(root, 'npm', 'linux-x64-gnu', 'package.json'), path.join(dest, 'package.json'))
    copyFileSync(artifactPath(LINUX_TARGETS.find((t) => t.abi === 'linux-arm64-gnu')), path.join(dest, `${pkg.napi.binaryName}.linux-x64-gnu.node`))
    const run = await runNode(path.join(dir, 'check.cjs'))
    const seen = JSON.parse(run.stdout.trim().split('\n').at(-1))
    expect(seen.message).toContain(`the package ${pkg.name}-linux-x64-gnu@${pkg.version}: installed ${pkg.version} at ${dest}, but it did not load`)
    expect(seen.message).toContain(`${pkg.napi.binaryName}.linux-x64-gnu.node is built for arm64, this process runs on x64`)
  })

  it('says when no binary is published for the platform', async () => {
    const run = await runNode(path.join(app, 'check.cjs'), [], { prefix: ['--require', path.join(root, '__test__', 'fixtures', 'pretend-riscv64.cjs')] })
    const seen = JSON.parse(run.stdout.trim().split('\n').at(-1))
    expect(seen.message).toContain('could not load its native addon for linux-riscv64-gnu')
    expect(seen.message).toContain('No binary is published for linux-riscv64-gnu')
    expect(seen.message).toContain('NAPI_RS_NATIVE_LIBRARY_PATH')
  })
})
