// A throwaway npm registry (Verdaccio 6.8.0 from .tools/verdaccio, see
// scripts/install-verdaccio.sh) on a free loopback port, with its storage in
// a temporary folder, and the release flow that publishes this package to
// it the napi-rs way. Used by __test__/release/registry-install.test.mjs.
//
// Our package names are served only from what is published to it; any other
// package (mongodb and its dependencies) is fetched through from the npm
// registry, so an application installs as it would from npm.
import { spawn, spawnSync } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { freePort } from './ferretdb.mjs'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
export const VERDACCIO_BIN = path.join(root, '.tools', 'verdaccio', 'node_modules', 'verdaccio', 'bin', 'verdaccio')
const NAPI_CLI = path.join(root, 'node_modules', '@napi-rs', 'cli', 'dist', 'cli.js')

/**
 * Starts Verdaccio and registers a user. Resolves to `{ url, dir, npmrc,
 * env, stop() }`: `npmrc` is a user config with the registry and the
 * publishing token, `env` the variables that make npm use it.
 */
export async function startRegistry({ node = process.execPath } = {}) {
  if (!existsSync(VERDACCIO_BIN)) throw new Error('Verdaccio is not installed: bash scripts/install-verdaccio.sh')
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mongo-locks-registry-'))
  const port = await freePort()
  const url = `http://127.0.0.1:${port}/`
  const ours = { access: '$all', publish: '$authenticated', unpublish: '$authenticated' }
  // Verdaccio reads YAML, and JSON is YAML.
  writeFileSync(path.join(dir, 'config.yaml'), JSON.stringify({
    storage: path.join(dir, 'storage'),
    auth: { htpasswd: { file: path.join(dir, 'htpasswd'), max_users: 10 } },
    uplinks: { npmjs: { url: 'https://registry.npmjs.org/', timeout: '60s', maxage: '30m' } },
    packages: {
      'mongo-locks-native': ours,
      'mongo-locks-native-*': ours,
      '**': { access: '$all', publish: '$authenticated', proxy: 'npmjs' },
    },
    web: { enable: false },
    log: { type: 'stdout', format: 'pretty', level: 'warn' },
    server: { keepAliveTimeout: 60 },
    max_body_size: '100mb',
  }))
  const child = spawn(node, [VERDACCIO_BIN, '--config', path.join(dir, 'config.yaml'), '--listen', `127.0.0.1:${port}`], {
    cwd: dir, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODE_ENV: 'production' },
  })
  let output = ''
  child.stdout.on('data', (d) => { output += d })
  child.stderr.on('data', (d) => { output += d })
  const stop = () => new Promise((resolve) => {
    const done = () => { rmSync(dir, { recursive: true, force: true }); resolve() }
    if (child.exitCode !== null || child.signalCode !== null) return done()
    child.once('exit', done)
    child.kill('SIGTERM')
    setTimeout(() => child.kill('SIGKILL'), 5000).unref()
  })
  try {
    const deadline = Date.now() + 30_000
    for (;;) {
      if (child.exitCode !== null) throw new Error(`Verdaccio exited with ${child.exitCode}:\n${output}`)
      if (Date.now() > deadline) throw new Error(`Verdaccio did not answer on ${url} within 30 s:\n${output}`)
      try {
        if ((await fetch(`${url}-/ping`)).ok) break
      } catch {}
      await new Promise((r) => setTimeout(r, 100))
    }
    const res = await fetch(`${url}-/user/org.couchdb.user:release`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'release', password: 'release-password' }),
    })
    const { token } = await res.json()
    if (!token) throw new Error(`Verdaccio gave no token (${res.status})`)
    const npmrc = path.join(dir, 'npmrc')
    writeFileSync(npmrc, `registry=${url}\n//127.0.0.1:${port}/:_authToken=${token}\n`)
    const env = {
      npm_config_userconfig: npmrc,
      npm_config_registry: url,
      npm_config_update_notifier: 'false',
      npm_config_audit: 'false',
      npm_config_fund: 'false',
    }
    return { url, dir, npmrc, env, stop, output: () => output }
  } catch (err) {
    await stop()
    throw err
  }
}

function run(cmd, args, { cwd, env = {} }) {
  const r = spawnSync(cmd, args, { cwd, env: { ...process.env, ...env }, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 })
  if (r.status !== 0) throw new Error(`${[cmd, ...args].join(' ')} (in ${cwd}) failed with ${r.status ?? r.signal}:\n${r.stdout}\n${r.stderr}`)
  return r.stdout
}

/**
 * Publishes the package to `registry` as the release workflow does, with
 * the binaries of `artifactsDir` (the Linux ones built here):
 *
 * 1. a staging copy: the files `npm pack` ships, package.json, and the
 *    platform package folders of npm/ (made by `napi create-npm-dirs`);
 * 2. `napi artifacts`: the binaries into npm/<platform>/;
 * 3. `napi prepublish -t npm --no-gh-release`: checks each platform package,
 *    publishes it, and lists the platform packages in the main package's
 *    optionalDependencies, at exactly its version;
 * 4. `npm publish` of the main package.
 *
 * Steps 2 and 3 get a napi config with the `targets` that have binaries
 * here (the release has all seven); the main package is then given the
 * optionalDependencies prepublish writes for the full target list, so it
 * is the manifest users get. npm skips an optional dependency the registry
 * does not have (the macOS and Windows packages here), as it skips one whose
 * os, cpu or libc do not match.
 */
export async function publishRelease(registry, { artifactsDir, targets }) {
  const stage = mkdtempSync(path.join(os.tmpdir(), 'mongo-locks-release-'))
  try {
    const [packed] = JSON.parse(run('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', stage], { cwd: root }))
    run('tar', ['-xzf', path.join(stage, packed.filename), '-C', stage], { cwd: stage })
    const pkgDir = path.join(stage, 'package')
    cpSync(path.join(root, 'npm'), path.join(pkgDir, 'npm'), { recursive: true })
    const pkg = JSON.parse(readFileSync(path.join(pkgDir, 'package.json'), 'utf8'))
    const config = { ...pkg.napi, targets }
    writeFileSync(path.join(pkgDir, 'napi-here.json'), JSON.stringify(config))
    const napi = (args) => run(process.execPath, [NAPI_CLI, ...args], { cwd: pkgDir, env: registry.env })
    napi(['artifacts', '--config-path', 'napi-here.json', '--output-dir', artifactsDir, '--npm-dir', 'npm'])
    napi(['prepublish', '--config-path', 'napi-here.json', '--npm-dir', 'npm', '--tagstyle', 'npm', '--no-gh-release'])
    const prepared = JSON.parse(readFileSync(path.join(pkgDir, 'package.json'), 'utf8'))
    const { parseTriple } = await import(path.join(root, 'node_modules', '@napi-rs', 'cli', 'dist', 'index.js'))
    const optionalDependencies = Object.fromEntries(
      pkg.napi.targets.map((triple) => [`${pkg.name}-${parseTriple(triple).platformArchABI}`, pkg.version]),
    )
    writeFileSync(path.join(pkgDir, 'package.json'), JSON.stringify({ ...prepared, optionalDependencies }, null, 2) + '\n')
    rmSync(path.join(pkgDir, 'napi-here.json'))
    run('npm', ['publish', '--ignore-scripts'], { cwd: pkgDir, env: registry.env })
    return { prepared: prepared.optionalDependencies, optionalDependencies }
  } finally {
    rmSync(stage, { recursive: true, force: true })
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const registry = await startRegistry()
  console.log(`Verdaccio on ${registry.url} (user config ${registry.npmrc}); Ctrl-C stops it`)
  process.on('SIGINT', async () => { await registry.stop(); process.exit(0) })
  setInterval(() => {}, 1 << 30)
}
