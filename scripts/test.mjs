// `npm test`: build the addon, start FerretDB (unless MONGO_URL is set), run
// the vitest suite and `cargo test`, and stop the server whatever happens.
//
// The suite runs in full on the Node versions users run, 22 and 24, both from
// npm devDependencies (`node22`: npm:node@^22, and `node`), whatever Node
// runs npm. That Node, when it is another version (Node 20 on the CI image),
// gets a smoke run: a few quick files that load the addon and lock against
// the server. `npm test -- <files or folders>` runs those once, on the Node
// running npm, or on the one TEST_NODE names (22, 24, or a path).
//
// While scripts/build-platforms.mjs is building the platform binaries (CI
// starts it before this, see .ci/run), the suite runs without the two files
// that test those binaries; they run once the build has ended.
import { spawn, spawnSync } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { testServer } from '../__test__/support/ferretdb.mjs'
import { NOT_CHECKED_DIR } from '../__test__/support/faketime.mjs'
import { buildAddon, reusableCrossBuild } from './build.mjs'
import { CROSS_TARGET_DIR, buildEnv, platformBuildsRunning } from './build-platforms.mjs'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
// Under `npm run`, node_modules/.bin comes first on PATH and its `node` is
// the Node 24 of the `node` package; npm tells us the Node it runs on.
const node = process.env.npm_node_execpath || process.execPath
const extra = process.argv.slice(2)
/** The Node versions the suite runs on in full: npm packages, by major. */
const FULL_NODES = {
  22: path.join(root, 'node_modules', 'node22', 'bin', 'node'),
  24: path.join(root, 'node_modules', 'node', 'bin', 'node'),
}
/**
 * Quick files that load the addon and lock against the server, for the Node
 * running npm when the full runs do not cover its major version.
 */
const SMOKE_FILES = ['__test__/server/lock.test.mjs', '__test__/server/drop-in-runtime.test.mjs', '__test__/server/hapi.test.mjs']

function step(label, cmd, args, env = {}) {
  console.log(`\n▶ ${label}: ${[cmd, ...args].join(' ')}`)
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: root, stdio: 'inherit', env: { ...process.env, ...env } })
    child.on('exit', (code, signal) => resolve(code === 0 ? 0 : code ?? (signal ? 1 : 1)))
    child.on('error', (e) => { console.error(e); resolve(1) })
  })
}

const versionOf = (bin) => spawnSync(bin, ['--version'], { encoding: 'utf8' }).stdout?.trim() || `(${bin} did not run)`
const majorOf = (version) => Number(/^v(\d+)\./.exec(version)?.[1])

/** The Node of a run with files given: TEST_NODE (22, 24 or a path), else npm's. */
function singleRunNode() {
  const wanted = process.env.TEST_NODE
  if (!wanted) return node
  if (FULL_NODES[wanted]) return FULL_NODES[wanted]
  if (path.isAbsolute(wanted) || wanted.includes(path.sep)) return path.resolve(wanted)
  console.error(`TEST_NODE=${wanted}: give 22, 24 or the path of a node binary`)
  process.exit(2)
}

/**
 * `cargo test` on the dependencies the addon's build compiled, not a third
 * build of the crate graph: cargo reuses a compiled dependency only for the
 * same target, profile, flags and target directory. `napi build` passes
 * `--target <host triple>` (target/<triple>/release, not target/release);
 * the linux-x64-gnu cross build (when build.mjs used its binary) is
 * cargo-zigbuild's, in target/cross. Not `--lib`: with the test binary
 * as the only root, cargo compiles every dependency as LTO bitcode only,
 * a different build from the addon's (measured: 2.5 min instead of 1.5).
 */
function cargoTest() {
  const cross = reusableCrossBuild()
  if (cross) {
    return ['cargo-zigbuild', ['test', '--release', '--quiet', '--target', cross.target.build, '--target-dir', CROSS_TARGET_DIR], buildEnv()]
  }
  const host = spawnSync('rustc', ['-vV'], { encoding: 'utf8' }).stdout?.match(/^host: (\S+)$/m)?.[1]
  return ['cargo', ['test', '--release', '--quiet', ...(host ? ['--target', host] : [])], process.env]
}

/** The test files that load the platform binaries of target/cross/artifacts. */
const PLATFORM_TEST_FILES = ['__test__/release/platforms.test.mjs', '__test__/release/registry-install.test.mjs']

/**
 * Test files that run alone after each full run, not beside the others:
 * their servers (PostgreSQL, FerretDB, Toxiproxy and thousands of held
 * locks) load both cores, and the timing checks of the other files (a
 * waiter's share under contention) are written for an otherwise quiet
 * machine (seen: a fairness check missed its floor while this ran beside it).
 */
const ALONE_FILES = ['__test__/faults/refresh.test.mjs']

// A list entry that names no file would be skipped without a word (a vitest
// filter that matches nothing, an --exclude of nothing): fail instead.
const missing = [...SMOKE_FILES, ...PLATFORM_TEST_FILES, ...ALONE_FILES].filter((f) => !existsSync(path.join(root, f)))
if (missing.length) {
  console.error(`scripts/test.mjs names test files that do not exist: ${missing.join(', ')}`)
  process.exit(2)
}

async function waitForBuilds(pids) {
  const started = Date.now()
  console.log(`\n▶ waiting for the platform binaries (scripts/build-platforms.mjs, pid ${pids.join(', ')})`)
  while (platformBuildsRunning().length) await new Promise((resolve) => setTimeout(resolve, 1000))
  console.log(`  done ${Math.round((Date.now() - started) / 1000)} s later`)
}

const single = extra.length ? singleRunNode() : null
if (!extra.length && process.env.TEST_NODE) console.log(`TEST_NODE=${process.env.TEST_NODE} is for runs with files (npm test -- <files>): the full runs are on Node 22 and 24`)

// What this run could not check is said at its end, from what the test
// files write there (nothing left from an earlier run).
rmSync(NOT_CHECKED_DIR, { recursive: true, force: true })

let failed = 0
if (!process.env.SKIP_BUILD) {
  failed = buildAddon({ node })
  if (failed) process.exit(failed)
}

const server = await testServer()
console.log(`\n▶ MongoDB under test: ${server.external ? 'MONGO_URL' : 'FerretDB 1.24.2 (SQLite backend)'} at ${server.url.replace(/\/\/[^@/]*@/, '//****@')}`)
const stopServer = () => server.stop()
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, async () => { await stopServer(); process.exit(130) })
try {
  const env = { MONGO_URL: server.url }
  const vitest = path.join(root, 'node_modules', 'vitest', 'vitest.mjs')
  const running = extra.length ? [] : platformBuildsRunning()
  const building = running.length > 0
  const later = building ? PLATFORM_TEST_FILES.flatMap((f) => ['--exclude', f]) : []
  const but = building ? ' (the platform tests after the build)' : ''
  const vitestCodes = []
  // The full runs: Node 22 and Node 24 (where `await using` is native syntax).
  const full = extra.length ? [] : Object.values(FULL_NODES).map((bin) => [versionOf(bin), bin])
  if (single) vitestCodes.push(await step(`vitest on Node ${versionOf(single)}`, single, [vitest, 'run', ...extra], env))
  const alone = ALONE_FILES.flatMap((f) => ['--exclude', f])
  for (const [version, bin] of full) {
    vitestCodes.push(await step(`vitest on Node ${version}${but}`, bin, [vitest, 'run', ...later, ...alone], env))
    vitestCodes.push(await step(`vitest on Node ${version}: ${ALONE_FILES.join(', ')}, alone`, bin, [vitest, 'run', ...ALONE_FILES], env))
  }
  // The Node running npm, when the full runs leave its major version out: a smoke run.
  const ownVersion = versionOf(node)
  if (!extra.length && !full.some(([version]) => majorOf(version) === majorOf(ownVersion))) {
    vitestCodes.push(await step(`vitest on Node ${ownVersion} (npm's own Node): a smoke run`, node, [vitest, 'run', ...SMOKE_FILES], env))
  }
  // A smoke run of the benchmark, to keep it working: a crash fails, a timing never does.
  const benchCode = extra.length ? 0 : await step('benchmark smoke (npm run bench -- --quick)', node, [path.join(root, 'benchmark', 'bench.mjs'), '--quick'], env)
  if (building) {
    await waitForBuilds(running)
    for (const [version, bin] of full) {
      vitestCodes.push(await step(`vitest on Node ${version}: the platform tests`, bin, [vitest, 'run', ...PLATFORM_TEST_FILES], env))
    }
  }
  // After the builds: it compiles in their target directory (cargo locks it).
  const [cargoCmd, cargoArgs, cargoEnv] = cargoTest()
  const cargoCode = extra.length ? 0 : await step('cargo test (Rust unit tests)', cargoCmd, cargoArgs, { ...cargoEnv, ...env })
  failed = vitestCodes.find((c) => c) || cargoCode || benchCode
} finally {
  await stopServer()
}
const notChecked = (() => {
  try {
    return readdirSync(NOT_CHECKED_DIR).filter((f) => f.endsWith('.txt')).sort().map((f) => readFileSync(path.join(NOT_CHECKED_DIR, f), 'utf8').trim())
  } catch {
    return []
  }
})()
if (notChecked.length) console.log(`\n⚠ guarantees this run did not check:\n${notChecked.map((l) => `  ${l}`).join('\n')}`)
console.log(failed ? '\n✗ tests failed' : notChecked.length ? '\n✓ all tests that ran passed (not all guarantees were checked: see above)' : '\n✓ all tests passed')
process.exit(failed)
