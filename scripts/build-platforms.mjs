// Cross-builds the four Linux release binaries with the napi-rs CLI and
// cargo-zigbuild (`napi build -x`): linux x64 and arm64, each glibc and musl.
// The glibc ones link against glibc 2.17's symbols (zig's `.2.17` target
// suffix), so they load on any glibc from 2.17 on.
//
// `npm run build:platforms` (scripts/install-cross.sh installs zig and
// cargo-zigbuild first). Each target is built once per source state: a stamp
// beside the binary records a hash of the Rust sources, the lockfile and the
// toolchain, and a target whose stamp matches is skipped, so CI pays for the
// cross builds once and every test reuses them.
//
// Two pipelines run at once, glibc (x64 then arm64, then the macOS check)
// and musl (x64 then arm64), each in its own cargo target directory (cargo
// locks a directory for one build at a time): most of a build's time is one
// core compiling the mongodb crate and then linking the addon, so one
// pipeline fills the core the other leaves idle.
//
// Out of the way of the host build: cargo's target directories are
// target/cross and target/cross-musl (not target/), and the binaries land in
// target/cross/artifacts (napi --output-dir), never in the package root; binding.js and index.d.ts
// are not regenerated (--no-js, and the type file goes to a scratch folder).
// After building, every binary is inspected (readelf) and the findings are
// written to target/cross/artifacts/report.json and printed.
import { spawn, execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
export const CROSS_TARGET_DIR = path.join(root, 'target', 'cross')
/**
 * While a build runs, a file named by its pid is here: `npm test` runs the
 * tests that need no platform binary first, and waits for the builds before
 * those that do.
 */
export const BUILDING_DIR = path.join(CROSS_TARGET_DIR, 'building')

/** The pids of the platform builds running now (none: an empty array). */
export function platformBuildsRunning() {
  let names = []
  try { names = readdirSync(BUILDING_DIR) } catch {}
  return names.map(Number).filter((pid) => {
    try {
      process.kill(pid, 0)
      return true
    } catch {
      return false
    }
  })
}

/** The musl pipeline's cargo target directory (see above). */
export const MUSL_TARGET_DIR = path.join(root, 'target', 'cross-musl')
export const ARTIFACTS_DIR = path.join(CROSS_TARGET_DIR, 'artifacts')
export const TOOLS_BIN = path.join(root, '.tools', 'bin')
const BINARY_NAME = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')).napi.binaryName

/** The oldest glibc the -gnu binaries are linked for. */
export const GLIBC_FLOOR = '2.17'

/**
 * The Linux targets built here. `build` is what `napi build --target` gets
 * (cargo-zigbuild reads a glibc version after the dot); `machine` is the ELF
 * e_machine readelf prints; `libs` the only libraries the binary may need.
 */
export const LINUX_TARGETS = [
  { abi: 'linux-x64-gnu', triple: 'x86_64-unknown-linux-gnu', build: `x86_64-unknown-linux-gnu.${GLIBC_FLOOR}`, arch: 'x64', libc: 'glibc', machine: 'Advanced Micro Devices X86-64', libs: ['libc.so.6', 'libm.so.6', 'libpthread.so.0', 'libdl.so.2', 'librt.so.1', 'ld-linux-x86-64.so.2', 'libgcc_s.so.1'] },
  { abi: 'linux-x64-musl', triple: 'x86_64-unknown-linux-musl', build: 'x86_64-unknown-linux-musl', arch: 'x64', libc: 'musl', machine: 'Advanced Micro Devices X86-64', libs: ['libc.so', 'libc.musl-x86_64.so.1', 'libgcc_s.so.1'] },
  { abi: 'linux-arm64-gnu', triple: 'aarch64-unknown-linux-gnu', build: `aarch64-unknown-linux-gnu.${GLIBC_FLOOR}`, arch: 'arm64', libc: 'glibc', machine: 'AArch64', libs: ['libc.so.6', 'libm.so.6', 'libpthread.so.0', 'libdl.so.2', 'librt.so.1', 'ld-linux-aarch64.so.1', 'libgcc_s.so.1'] },
  { abi: 'linux-arm64-musl', triple: 'aarch64-unknown-linux-musl', build: 'aarch64-unknown-linux-musl', arch: 'arm64', libc: 'musl', machine: 'AArch64', libs: ['libc.so', 'libc.musl-aarch64.so.1', 'libgcc_s.so.1'] },
]

/** The cargo target directory a target builds in: one per pipeline. */
const targetDirOf = (t) => (t.libc === 'musl' ? MUSL_TARGET_DIR : CROSS_TARGET_DIR)

export const artifactPath = (t) => path.join(ARTIFACTS_DIR, `${BINARY_NAME}.${t.abi}.node`)
const stampPath = (t) => path.join(ARTIFACTS_DIR, `${BINARY_NAME}.${t.abi}.stamp.json`)

/**
 * The target whose release binary is also the test binary on an x64 glibc
 * Linux host (build once, use twice): its build also writes binding.js and
 * index.d.ts (kept beside it as generated.binding.js and generated.index.d.ts),
 * and scripts/build.mjs copies the three into the package root instead of
 * compiling the crate a second time for the host; scripts/test.mjs runs
 * `cargo test` in this target's directory, on the dependencies built here.
 */
export const HOST_TEST_ABI = 'linux-x64-gnu'
export const generatedPath = (file) => path.join(ARTIFACTS_DIR, `generated.${file}`)

/** PATH with .tools/bin (zig, cargo-zigbuild) and cargo first. */
export function buildEnv() {
  const home = process.env.HOME || '/root'
  return { ...process.env, PATH: [TOOLS_BIN, path.join(home, '.cargo', 'bin'), process.env.PATH].join(path.delimiter) }
}

function toolVersion(cmd, args, env) {
  try {
    return execFileSync(cmd, args, { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()
  } catch {
    return null
  }
}

function filesUnder(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name)
    return e.isDirectory() ? filesUnder(p) : [p]
  })
}

/**
 * What a binary is built from: the crate's sources, manifest, lockfile and
 * build script, the napi config, and the Rust, zig and cargo-zigbuild
 * versions. A change to any of them makes the stamps stale.
 */
export function sourceFingerprint(env = buildEnv()) {
  const hash = createHash('sha256')
  const files = ['Cargo.toml', 'Cargo.lock', 'build.rs'].map((f) => path.join(root, f))
    .concat(filesUnder(path.join(root, 'src')).sort())
    .filter((f) => existsSync(f))
  for (const f of files) {
    hash.update(path.relative(root, f)).update('\0').update(readFileSync(f)).update('\0')
  }
  hash.update(JSON.stringify(JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')).napi))
  const toolchain = {
    rustc: toolVersion('rustc', ['-V'], env),
    zig: toolVersion('zig', ['version'], env),
    zigbuild: toolVersion('cargo-zigbuild', ['--version'], env) ?? toolVersion('cargo', ['zigbuild', '-V'], env),
  }
  hash.update(JSON.stringify(toolchain))
  return { hash: hash.digest('hex'), toolchain }
}

/** Whether each target's binary exists and was built from the current sources. */
export function artifactStates(fingerprint = sourceFingerprint()) {
  return LINUX_TARGETS.map((t) => {
    const file = artifactPath(t)
    let stamp = null
    try { stamp = JSON.parse(readFileSync(stampPath(t), 'utf8')) } catch {}
    const exists = existsSync(file)
    return { target: t, file, exists, stamp, fresh: exists && stamp?.hash === fingerprint.hash && stamp?.size === statSync(file).size }
  })
}

function readelf(args, file) {
  return execFileSync('readelf', [...args, '-W', file], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 })
}

const versionKey = (v) => v.split('.').map(Number)
const compareVersions = (a, b) => {
  const [x, y] = [versionKey(a), versionKey(b)]
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) - (y[i] ?? 0)
  }
  return 0
}

/**
 * What a shared object is and needs, read with readelf: machine, ELF type,
 * interpreter (a loadable module has none), NEEDED libraries, glibc symbol
 * versions, whether symbol and debug sections were stripped, and whether it
 * exports the Node-API module entry point.
 */
export function inspectBinary(file) {
  const header = readelf(['-h'], file)
  const sections = readelf(['-S'], file)
  const dynamic = readelf(['-d'], file)
  const programs = readelf(['-l'], file)
  const versions = readelf(['-V'], file)
  const dynsyms = readelf(['--dyn-syms'], file)
  const field = (name) => header.match(new RegExp(`^\\s*${name}:\\s*(.+)$`, 'm'))?.[1].trim() ?? null
  const glibc = [...new Set([...versions.matchAll(/Name: GLIBC_([0-9.]+)/g)].map((m) => m[1]))].sort(compareVersions)
  const sectionNames = [...sections.matchAll(/^\s*\[\s*\d+\]\s+(\S+)/gm)].map((m) => m[1])
  return {
    file: path.basename(file),
    bytes: statSync(file).size,
    class: field('Class'),
    type: field('Type')?.split(' ')[0] ?? null,
    machine: field('Machine'),
    interpreter: programs.match(/Requesting program interpreter: ([^\]]+)\]/)?.[1] ?? null,
    needed: [...dynamic.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]),
    rpath: dynamic.match(/\((?:RPATH|RUNPATH)\)\s+Library r(?:un)?path: \[([^\]]+)\]/)?.[1] ?? null,
    glibcVersions: glibc,
    maxGlibc: glibc.at(-1) ?? null,
    symtab: sectionNames.includes('.symtab'),
    debugSections: sectionNames.filter((s) => s.startsWith('.debug')),
    stripped: !sectionNames.includes('.symtab') && !sectionNames.some((s) => s.startsWith('.debug')),
    napiEntry: /\snapi_register_module_v1\b/.test(dynsyms),
  }
}

/** The symbols a shared object needs from others (undefined, not weak), without versions. */
export function importedSymbols(file) {
  return [...new Set(readelf(['--dyn-syms'], file).split('\n')
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f[6] === 'UND' && f[4] !== 'WEAK' && f[7])
    .map((f) => f[7].replace(/@.*/, '')))].sort()
}

/** The symbols a shared library defines, without versions. */
export function exportedSymbols(file) {
  return new Set(readelf(['--dyn-syms'], file).split('\n')
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f.length >= 8 && /^\d+:$/.test(f[0]) && f[6] !== 'UND')
    .map((f) => f[7].replace(/@.*/, '')))
}

/**
 * A binary grown by accident (debug info left in, a heavy new dependency)
 * fails here. The AWS SDK's credential chain in Rust (aws-config, its HTTPS
 * client and aws-lc) once took x64 from 9.8 to 17.3 MiB; it is kept out
 * (crates/aws-config), and this budget fails if it, or anything that
 * size, comes in.
 */
const SIZE_BUDGET_MIB = 14

/** The checks a release binary must pass, as [label, ok, detail] rows. */
export function checkBinary(t, info) {
  return [
    ['ELF 64-bit shared object', info.class === 'ELF64' && info.type === 'DYN', `${info.class} ${info.type}`],
    [`machine ${t.machine}`, info.machine === t.machine, info.machine],
    ['no program interpreter (loaded by Node\'s dynamic linker)', info.interpreter === null, info.interpreter ?? 'none'],
    [`NEEDED only ${t.libc} libraries`, info.needed.length > 0 && info.needed.every((l) => t.libs.includes(l)), info.needed.join(' ')],
    ['no RPATH/RUNPATH', info.rpath === null, info.rpath ?? 'none'],
    t.libc === 'glibc'
      ? [`glibc symbols ≤ GLIBC_${GLIBC_FLOOR}`, info.maxGlibc !== null && compareVersions(info.maxGlibc, GLIBC_FLOOR) <= 0, info.maxGlibc ? `GLIBC_${info.maxGlibc}` : 'none']
      : ['no glibc symbol versions', info.glibcVersions.length === 0, info.glibcVersions.join(' ') || 'none'],
    ['stripped (no .symtab, no .debug_*)', info.stripped, info.stripped ? 'stripped' : `symtab=${info.symtab} ${info.debugSections.join(' ')}`],
    ['exports napi_register_module_v1', info.napiEntry, String(info.napiEntry)],
    [`under ${SIZE_BUDGET_MIB} MiB`, info.bytes < SIZE_BUDGET_MIB * 1024 * 1024, `${(info.bytes / 1048576).toFixed(2)} MiB`],
  ]
}

/** A command's exit status, its output going to ours (with `label` before each line). */
function run(cmd, args, env, label) {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] })
    for (const stream of [child.stdout, child.stderr]) {
      let rest = ''
      stream.on('data', (chunk) => {
        const lines = (rest + chunk).split('\n')
        rest = lines.pop()
        for (const line of lines) console.log(`[${label}] ${line}`)
      })
      stream.on('end', () => { if (rest) console.log(`[${label}] ${rest}`) })
    }
    child.on('error', (e) => { console.error(`[${label}] ${e.message}`); resolve(1) })
    child.on('close', (code, signal) => resolve(code ?? (signal ? 1 : 0)))
  })
}

async function buildOne(t, fingerprint, env) {
  const scratch = path.join(CROSS_TARGET_DIR, 'scratch', t.abi)
  rmSync(scratch, { recursive: true, force: true })
  mkdirSync(scratch, { recursive: true })
  const cli = path.join(root, 'node_modules', '@napi-rs', 'cli', 'dist', 'cli.js')
  const js = t.abi === HOST_TEST_ABI ? ['--js', 'binding.js'] : ['--no-js']
  const args = [cli, 'build', '--platform', '--release', '--target', t.build, '--cross-compile',
    '--target-dir', targetDirOf(t), '--output-dir', scratch, ...js, '--dts', 'index.d.ts']
  // Two cores are shared with the host build and the tests: stay polite.
  const nice = toolVersion('nice', ['--version'], env) !== null
  const [cmd, cmdArgs] = nice ? ['nice', ['-n', '10', process.execPath, ...args]] : [process.execPath, args]
  console.log(`\n▶ ${t.abi}: napi ${args.slice(1).join(' ')}`)
  const started = Date.now()
  const status = await run(cmd, cmdArgs, env, t.abi)
  const seconds = Math.round((Date.now() - started) / 1000)
  if (status !== 0) {
    console.error(`✗ ${t.abi}: napi build exited with ${status} after ${seconds} s`)
    return false
  }
  const built = path.join(scratch, `${BINARY_NAME}.${t.abi}.node`)
  if (!existsSync(built)) {
    console.error(`✗ ${t.abi}: napi build left no ${path.basename(built)} in ${scratch}`)
    return false
  }
  mkdirSync(ARTIFACTS_DIR, { recursive: true })
  renameSync(built, artifactPath(t))
  if (t.abi === HOST_TEST_ABI) {
    for (const f of ['binding.js', 'index.d.ts']) renameSync(path.join(scratch, f), generatedPath(f))
  }
  writeFileSync(stampPath(t), JSON.stringify({
    hash: fingerprint.hash, toolchain: fingerprint.toolchain, target: t.build, seconds,
    builtAt: new Date().toISOString(), size: statSync(artifactPath(t)).size,
  }, null, 2))
  rmSync(scratch, { recursive: true, force: true })
  console.log(`✓ ${t.abi}: built in ${seconds} s`)
  return true
}

/**
 * macOS cannot be built here (no Apple SDK to link against), but the crate can
 * be type-checked for it: `cargo-zigbuild check --target aarch64-apple-darwin`
 * compiles every dependency's build script and C code (zig's macOS headers)
 * and checks the Rust code under macOS's cfg, so a Linux-only construct fails
 * here rather than on the release runner. Skipped when its stamp matches.
 */
export const MACOS_CHECK = { triple: 'aarch64-apple-darwin' }
const macosStampPath = () => path.join(ARTIFACTS_DIR, `check.${MACOS_CHECK.triple}.stamp.json`)

export function macosCheckState(fingerprint = sourceFingerprint()) {
  let stamp = null
  try { stamp = JSON.parse(readFileSync(macosStampPath(), 'utf8')) } catch {}
  return { stamp, fresh: stamp?.hash === fingerprint.hash && stamp?.ok === true }
}

async function checkMacos(fingerprint, env) {
  // target/cross, the Linux builds' directory: the build scripts and proc
  // macros (host code, the same for every target) compiled there are reused.
  const args = ['check', '--release', '--target', MACOS_CHECK.triple, '--target-dir', CROSS_TARGET_DIR]
  const nice = toolVersion('nice', ['--version'], env) !== null
  console.log(`\n▶ macOS type check: cargo-zigbuild ${args.join(' ')}`)
  const started = Date.now()
  const status = await run(nice ? 'nice' : 'cargo-zigbuild', nice ? ['-n', '10', 'cargo-zigbuild', ...args] : args, env, 'macos-check')
  const seconds = Math.round((Date.now() - started) / 1000)
  const ok = status === 0
  mkdirSync(ARTIFACTS_DIR, { recursive: true })
  writeFileSync(macosStampPath(), JSON.stringify({ hash: fingerprint.hash, target: MACOS_CHECK.triple, ok, seconds, checkedAt: new Date().toISOString() }, null, 2))
  console.log(`${ok ? '✓' : '✗'} macOS type check ${ok ? 'passed' : 'failed'} in ${seconds} s`)
  return ok
}

/** Builds the stale targets, inspects all four, writes report.json; resolves to an exit code. */
export async function buildPlatforms({ force = false, only = null } = {}) {
  const env = buildEnv()
  for (const [tool, args] of [['zig', ['version']], ['cargo-zigbuild', ['--help']], ['readelf', ['--version']]]) {
    if (toolVersion(tool, args, env) === null) {
      console.error(`✗ ${tool} is missing: run \`bash scripts/install-cross.sh\` first`)
      return 1
    }
  }
  const fingerprint = sourceFingerprint(env)
  const started = Date.now()
  const marker = path.join(BUILDING_DIR, String(process.pid))
  mkdirSync(BUILDING_DIR, { recursive: true })
  writeFileSync(marker, '')
  try {
    return await buildAndCheck({ force, only, env, fingerprint, started })
  } finally {
    rmSync(marker, { force: true })
  }
}

async function buildAndCheck({ force, only, env, fingerprint, started }) {
  let failed = false
  const stale = artifactStates(fingerprint).filter((state) => {
    if (only && !only.includes(state.target.abi)) return false
    if (state.fresh && !force) {
      console.log(`▶ ${state.target.abi}: up to date (built ${state.stamp.builtAt} in ${state.stamp.seconds} s), skipped`)
      return false
    }
    return true
  })
  /** One pipeline: its targets one after the other, in its own target directory. */
  const pipeline = async (libc, then) => {
    for (const state of stale.filter((s) => s.target.libc === libc)) {
      if (!(await buildOne(state.target, fingerprint, env))) failed = true
    }
    await then?.()
  }
  const macos = async () => {
    if (only && !only.includes('macos-check')) return
    const state = macosCheckState(fingerprint)
    if (state.fresh && !force) console.log(`▶ macOS type check: up to date (${state.stamp.checkedAt}), skipped`)
    else if (!(await checkMacos(fingerprint, env))) failed = true
  }
  // The macOS check shares the glibc pipeline's directory (target/cross):
  // the host's build scripts and proc macros compiled there are reused.
  await Promise.all([pipeline('glibc', macos), pipeline('musl')])
  const report = { fingerprint: fingerprint.hash, toolchain: fingerprint.toolchain, glibcFloor: GLIBC_FLOOR, macosCheck: macosCheckState(fingerprint).stamp, targets: [] }
  console.log('\nRelease binaries (target/cross/artifacts):')
  for (const state of artifactStates(fingerprint)) {
    if (!state.exists) {
      report.targets.push({ abi: state.target.abi, missing: true })
      if (!only || only.includes(state.target.abi)) failed = true
      console.log(`  ${state.target.abi}: missing`)
      continue
    }
    const info = inspectBinary(state.file)
    const checks = checkBinary(state.target, info)
    report.targets.push({ abi: state.target.abi, triple: state.target.triple, built: state.target.build, fresh: state.fresh, seconds: state.stamp?.seconds ?? null, ...info, checks: checks.map(([label, ok, detail]) => ({ label, ok, detail })) })
    console.log(`  ${state.target.abi}  ${(info.bytes / 1048576).toFixed(2)} MiB  ${info.machine}  NEEDED ${info.needed.join(',')}  ${info.maxGlibc ? `GLIBC_${info.maxGlibc}` : 'no GLIBC_'}  ${info.stripped ? 'stripped' : 'NOT stripped'}  interpreter ${info.interpreter ?? 'none'}`)
    for (const [label, ok, detail] of checks) {
      if (!ok) { failed = true; console.log(`    ✗ ${label}: ${detail}`) }
    }
  }
  mkdirSync(ARTIFACTS_DIR, { recursive: true })
  writeFileSync(path.join(ARTIFACTS_DIR, 'report.json'), JSON.stringify(report, null, 2))
  console.log(`${failed ? '✗' : '✓'} platform binaries ${failed ? 'failed' : 'ready'} (${Math.round((Date.now() - started) / 1000)} s)`)
  return failed ? 1 : 0
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2)
  const only = args.filter((a) => !a.startsWith('--'))
  process.exit(await buildPlatforms({ force: args.includes('--force'), only: only.length ? only : null }))
}
