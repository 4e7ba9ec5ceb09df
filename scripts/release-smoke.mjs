// The release workflow's test of one platform binary, on that platform (a
// macOS or Windows runner, or a node:*-slim / node:*-alpine container):
//
//   node scripts/release-smoke.mjs <platform> [<folder with the .node>]
//
// packs the main package and the platform package (npm/<platform>/ with the
// binary), installs both with `mongodb` into a fresh application outside the
// repository, as a user would, and there, from CommonJS and ESM, takes a lock,
// sees a second manager refused, frees it and hands a key over to a waiting
// manager, against MONGO_URL (or, without it, a MongoDB that
// mongodb-memory-server downloads, installed into the application only).
// Only Node's built-ins and npm are needed, not the repository's node_modules.
import { spawnSync } from 'node:child_process'
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8'))
const [abi, binaryDir = root] = process.argv.slice(2)
if (!abi) {
  console.error('usage: node scripts/release-smoke.mjs <platform, e.g. linux-x64-musl> [<folder with the .node>]')
  process.exit(2)
}
const binaryName = `${pkg.napi.binaryName}.${abi}.node`
const npmCmd = process.platform === 'win32' ? 'npm.cmd' : 'npm'

function run(cmd, args, cwd, env = {}) {
  console.log(`▶ ${[cmd, ...args].join(' ')}`)
  // npm is a .cmd on Windows, which Node runs only through a shell.
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', shell: process.platform === 'win32' && cmd === npmCmd, env: { ...process.env, ...env }, maxBuffer: 64 * 1024 * 1024 })
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status ?? r.signal}):\n${r.stdout}\n${r.stderr}`)
  return r.stdout
}

const mongodbVersion = (() => {
  try { return JSON.parse(readFileSync(path.join(root, 'node_modules', 'mongodb', 'package.json'), 'utf8')).version } catch { return '6' }
})()

const tmp = mkdtempSync(path.join(os.tmpdir(), 'mongo-locks-release-smoke-'))
let failed = false
try {
  const binary = path.join(binaryDir, binaryName)
  if (!existsSync(binary)) throw new Error(`no ${binaryName} in ${binaryDir}`)
  // The platform package as `napi artifacts` fills it in: npm/<platform>/ plus the binary.
  const platformDir = path.join(tmp, 'platform')
  mkdirSync(platformDir)
  for (const f of ['package.json', 'README.md']) copyFileSync(path.join(root, 'npm', abi, f), path.join(platformDir, f))
  copyFileSync(binary, path.join(platformDir, binaryName))
  const [platformPacked] = JSON.parse(run(npmCmd, ['pack', '--json', '--pack-destination', tmp], platformDir))
  const [mainPacked] = JSON.parse(run(npmCmd, ['pack', '--json', '--ignore-scripts', '--pack-destination', tmp], root))
  if (mainPacked.files.some((f) => f.path.endsWith('.node'))) throw new Error('the main package must not ship a binary')

  const app = path.join(tmp, 'app')
  mkdirSync(app)
  writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'release-smoke-app', version: '1.0.0', private: true }))
  const deps = [`mongodb@${mongodbVersion}`, path.join(tmp, mainPacked.filename), path.join(tmp, platformPacked.filename)]
  if (!process.env.MONGO_URL) deps.push('mongodb-memory-server@10')
  run(npmCmd, ['install', ...deps, '--no-audit', '--no-fund'], app)
  copyFileSync(path.join(root, '__test__', 'fixtures', 'platform-smoke.cjs'), path.join(app, 'smoke.cjs'))
  writeFileSync(path.join(app, 'esm.mjs'), `
import { LockManager } from ${JSON.stringify(pkg.name)}
import { MongoClient } from 'mongodb'
const [uri, dbName, collectionName] = process.argv.slice(2)
const client = await MongoClient.connect(uri)
const collection = client.db(dbName).collection(collectionName)
const a = new LockManager(collection, { logger: false })
const b = new LockManager(collection, { logger: false })
const held = await a.lock('esm')
const refused = await b.lock('esm')
await held.free()
await a.close(); await b.close(); await client.close()
console.log(JSON.stringify({ held: Boolean(held), refused: refused === null }))
`)

  let server = null
  let uri = process.env.MONGO_URL
  if (!uri) {
    const { createRequire } = await import('node:module')
    const { MongoMemoryServer } = createRequire(path.join(app, 'package.json'))('mongodb-memory-server')
    server = await MongoMemoryServer.create()
    uri = server.getUri()
  }
  try {
    const collection = `release-smoke-${process.pid}`
    const out = JSON.parse(run(process.execPath, [path.join(app, 'smoke.cjs'), pkg.name, uri, 'mongo-locks-release-smoke', collection], app).trim().split('\n').at(-1))
    console.log(out)
    const expectedBinary = path.join(app, 'node_modules', `${pkg.name}-${abi}`, binaryName)
    const loaded = out.loaded.map((f) => path.resolve(f))
    if (loaded.length !== 1 || loaded[0].toLowerCase() !== path.resolve(expectedBinary).toLowerCase()) throw new Error(`loaded ${out.loaded}, expected ${expectedBinary}`)
    for (const k of ['held', 'refused', 'afterFree', 'handedOver']) if (out[k] !== true) throw new Error(`${k} is ${out[k]}`)
    if (out.documentsLeft !== 0) throw new Error(`${out.documentsLeft} lock documents left`)
    const esm = JSON.parse(run(process.execPath, [path.join(app, 'esm.mjs'), uri, 'mongo-locks-release-smoke', `${collection}-esm`], app).trim().split('\n').at(-1))
    if (!esm.held || !esm.refused) throw new Error(`ESM: ${JSON.stringify(esm)}`)
    console.log(`✓ ${abi} on Node ${process.version} (${process.platform} ${process.arch}): installed from the packed packages, locked, contended and freed from CommonJS and ESM`)
  } finally {
    await server?.stop()
  }
} catch (err) {
  failed = true
  console.error(`✗ ${abi}: ${err.stack || err}`)
} finally {
  rmSync(tmp, { recursive: true, force: true })
}
process.exit(failed ? 1 : 0)
