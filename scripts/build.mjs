// Builds the native addon (release) with the napi-rs CLI: the .node file,
// binding.js (the loader) and index.d.ts (types from the Rust doc comments).
import { spawnSync } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')

/** Runs `napi build`; returns its exit code. A build with nothing to do takes seconds. */
export function buildAddon({ node = process.execPath } = {}) {
  const cli = path.join(root, 'node_modules', '@napi-rs', 'cli', 'dist', 'cli.js')
  const args = [cli, 'build', '--platform', '--release', '--js', 'binding.js', '--dts', 'index.d.ts']
  console.log(`▶ build the addon: napi ${args.slice(1).join(' ')}`)
  const r = spawnSync(node, args, { cwd: root, stdio: 'inherit' })
  return r.status ?? 1
}

if (process.argv[1] === fileURLToPath(import.meta.url)) process.exit(buildAddon())
