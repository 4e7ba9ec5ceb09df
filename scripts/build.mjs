// Builds the native addon (release) with the napi-rs CLI: the .node file,
// binding.js (the loader) and index.d.ts (types from the Rust doc comments).
//
// Build once, use twice: on an x64 glibc Linux host where
// scripts/build-platforms.mjs has already built the linux-x64-gnu release
// binary from these very sources (its stamp matches: same Rust sources,
// Cargo.lock, toolchain), that binary, with the binding.js and index.d.ts its
// build generated, is copied into the package root instead of compiling the
// whole crate graph a second time for the host (CI: `.ci/run` builds the
// platform binaries first, so `npm test` tests the very binary that ships).
// Anywhere else (no cross build, or one from other sources) it is
// `napi build --platform --release` as before.
import { spawnSync } from 'node:child_process'
import { copyFileSync, existsSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { HOST_TEST_ABI, artifactStates, buildEnv, generatedPath, sourceFingerprint } from './build-platforms.mjs'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const BINARY_NAME = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')).napi.binaryName

function isX64GlibcLinux() {
  if (process.platform !== 'linux' || process.arch !== 'x64') return false
  try {
    return Boolean(process.report.getReport().header.glibcVersionRuntime)
  } catch {
    return false
  }
}

/**
 * The linux-x64-gnu binary build-platforms.mjs made from the current sources,
 * if this host can use it as its own: `{ target, file, binding, dts }`, or null.
 */
export function reusableCrossBuild() {
  if (process.env.MONGO_LOCKS_HOST_BUILD || !isX64GlibcLinux()) return null
  if (!existsSync(generatedPath('binding.js'))) return null
  const fingerprint = sourceFingerprint(buildEnv())
  const state = artifactStates(fingerprint).find((s) => s.target.abi === HOST_TEST_ABI)
  if (!state?.fresh || !existsSync(generatedPath('index.d.ts'))) return null
  return { target: state.target, file: state.file, binding: generatedPath('binding.js'), dts: generatedPath('index.d.ts') }
}

/**
 * Builds the addon (or takes the fresh linux-x64-gnu release binary, see
 * above); returns an exit code. A build with nothing to do takes seconds.
 * MONGO_LOCKS_HOST_BUILD=1 forces the host build.
 */
export function buildAddon({ node = process.execPath } = {}) {
  const cross = reusableCrossBuild()
  if (cross) {
    console.log(`▶ the addon: ${path.relative(root, cross.file)}, the release binary build-platforms.mjs built from these sources (glibc ${cross.target.build.split('.').slice(1).join('.')}), used as is`)
    copyFileSync(cross.file, path.join(root, `${BINARY_NAME}.${cross.target.abi}.node`))
    copyFileSync(cross.binding, path.join(root, 'binding.js'))
    copyFileSync(cross.dts, path.join(root, 'index.d.ts'))
    return 0
  }
  const cli = path.join(root, 'node_modules', '@napi-rs', 'cli', 'dist', 'cli.js')
  const args = [cli, 'build', '--platform', '--release', '--js', 'binding.js', '--dts', 'index.d.ts']
  console.log(`▶ build the addon: napi ${args.slice(1).join(' ')}`)
  const r = spawnSync(node, args, { cwd: root, stdio: 'inherit' })
  return r.status ?? 1
}

if (process.argv[1] === fileURLToPath(import.meta.url)) process.exit(buildAddon())
