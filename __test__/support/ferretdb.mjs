// Starts a throwaway FerretDB (SQLite backend) on a free loopback port, for
// the tests, the demo and the benchmark. With MONGO_URL set, uses that
// server instead and starts nothing. Optionally with a TLS listener (beside
// the plain one) and SCRAM authentication: see startFerretDB().
import { spawn, execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync, existsSync, readFileSync } from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
export const FERRETDB_BIN = path.join(root, '.tools', 'bin', 'ferretdb')

export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.unref()
    server.on('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    })
  })
}

function canConnect(port) {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1' })
    socket.once('connect', () => { socket.destroy(); resolve(true) })
    socket.once('error', () => resolve(false))
  })
}

const INSTALL_SCRIPT = path.join(root, 'scripts', 'install-ferretdb.sh')

/**
 * The build scripts/install-ferretdb.sh makes now, as it records it in
 * .tools/bin/ferretdb.patches: "<VERSION> <PATCHES>" (its two lines of that name).
 */
export function wantedFerretDBBuild() {
  const text = readFileSync(INSTALL_SCRIPT, 'utf8')
  const field = (name) => new RegExp(`^${name}=(\\S+)$`, 'm').exec(text)?.[1]
  return `${field('VERSION')} ${field('PATCHES')}`
}

/**
 * Builds FerretDB (scripts/install-ferretdb.sh) if .tools/bin/ferretdb is
 * missing, or was built without the current test-build patch (an older
 * binary: .tools/bin/ferretdb.patches missing or different).
 */
export function ensureFerretDB() {
  const marker = `${FERRETDB_BIN}.patches`
  const built = existsSync(marker) ? readFileSync(marker, 'utf8').trim() : null
  if (!existsSync(FERRETDB_BIN) || built !== wantedFerretDBBuild()) {
    execFileSync('bash', [INSTALL_SCRIPT], { stdio: 'inherit' })
  }
}

/**
 * Starts FerretDB and resolves to `{ url, port, dataDir, stop(), restart() }`.
 * `dataDir` survives `restart()` (the same data directory), and is removed by `stop()`.
 * `metricsUrl` serves its Prometheus metrics (the benchmark counts commands there).
 * `port` picks the port (a test that connects before the server exists); default: a free one.
 *
 * `tls: { certFile, keyFile, caFile? }` (e.g. from makeTestCA() of
 * test-ca.mjs: `{ certFile: ca.serverCertFile, keyFile: ca.serverKeyFile }`)
 * adds a TLS listener on its own port (`tlsPort`, or `tls.port`; the plain
 * one stays on `port`) and returns `tlsPort` and
 * `tlsUrl` = mongodb://localhost:<tlsPort>/?directConnection=true&tls=true,
 * without the CA (add tlsCAFile=… or the driver's option). With `caFile`,
 * FerretDB requires and verifies a client certificate signed by that CA
 * (Go's tls.RequireAndVerifyClientCert): every TLS client then needs
 * tlsCertificateKeyFile. The TLS URL is always a direct connection, also with
 * `replSetName`: the replica set's hello names the plain address.
 *
 * `auth: { username, password }` starts FerretDB with its SCRAM
 * authentication (--test-enable-new-auth) and that user created in `admin`
 * (on the first start of the data directory), and returns `authUrl` (the
 * plain port, credentials in the URL, authSource=admin; percent-encoded),
 * and `tlsAuthUrl` with `tls` too. `url` stays without credentials: with it,
 * hello and ping work but every other command fails with Unauthorized
 * ("Command insert requires authentication"). FerretDB is the one built by
 * scripts/install-ferretdb.sh, patched to honour saslStart's
 * skipEmptyExchange (without which the Rust driver cannot authenticate).
 *
 * `postgresql`: a PostgreSQL connection string (see postgres.mjs)
 * for FerretDB's PostgreSQL backend instead of SQLite.
 */
export async function startFerretDB({ replSetName, dataDir, port: wanted, tls, auth, postgresql } = {}) {
  ensureFerretDB()
  if (tls && !(tls.certFile && tls.keyFile)) throw new Error('startFerretDB: tls needs certFile and keyFile')
  if (auth && !(auth.username && auth.password)) throw new Error('startFerretDB: auth needs username and password')
  const dir = dataDir ?? mkdtempSync(path.join(os.tmpdir(), 'mongo-locks-ferretdb-'))
  let port = wanted ?? await freePort()
  let tlsPort = tls ? (tls.port ?? await freePort()) : undefined
  let debugPort = await freePort()
  let child
  const launch = async () => {
    const args = [
      `--listen-addr=127.0.0.1:${port}`,
      ...(postgresql ? ['--handler=postgresql', `--postgresql-url=${postgresql}`] : ['--handler=sqlite', `--sqlite-url=file:${dir}/`]),
      `--state-dir=${dir}`,
      '--telemetry=disable',
      `--debug-addr=127.0.0.1:${debugPort}`,
      '--log-level=error',
    ]
    if (replSetName) args.push(`--repl-set-name=${replSetName}`)
    if (tls) {
      args.push(
        `--listen-tls=127.0.0.1:${tlsPort}`,
        `--listen-tls-cert-file=${tls.certFile}`,
        `--listen-tls-key-file=${tls.keyFile}`,
      )
      if (tls.caFile) args.push(`--listen-tls-ca-file=${tls.caFile}`)
    }
    if (auth) {
      args.push(
        '--test-enable-new-auth',
        '--setup-database=admin',
        `--setup-username=${auth.username}`,
        `--setup-password=${auth.password}`,
      )
    }
    child = spawn(FERRETDB_BIN, args, { stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    child.stderr.on('data', (d) => { stderr += d })
    const deadline = Date.now() + 20_000
    for (const p of tls ? [port, tlsPort] : [port]) {
      while (!(await canConnect(p))) {
        if (child.exitCode !== null) throw new Error(`FerretDB exited with ${child.exitCode}: ${stderr}`)
        if (Date.now() > deadline) throw new Error(`FerretDB did not listen on ${p} within 20 s: ${stderr}`)
        await new Promise((r) => setTimeout(r, 50))
      }
    }
  }
  const halt = () => new Promise((resolve) => {
    if (!child || child.exitCode !== null || child.signalCode !== null) return resolve()
    child.once('exit', () => resolve())
    child.kill('SIGTERM')
    setTimeout(() => child.kill('SIGKILL'), 5000).unref()
  })
  // A port found free can be taken by another process before FerretDB binds
  // it (the tests start servers in parallel): then pick the ports again.
  for (let attempt = 1; ; attempt++) {
    try {
      await launch()
      break
    } catch (err) {
      if (attempt === 5 || !/address already in use/.test(err.message)) throw err
      if (wanted === undefined) port = await freePort()
      if (tls && tls.port === undefined) tlsPort = await freePort()
      debugPort = await freePort()
    }
  }
  const query = replSetName ? `?replicaSet=${replSetName}` : '?directConnection=true'
  const credentials = auth ? `${encodeURIComponent(auth.username)}:${encodeURIComponent(auth.password)}@` : ''
  const tlsQuery = '?directConnection=true&tls=true'
  return {
    url: `mongodb://127.0.0.1:${port}/${query}`,
    port,
    ...(tls && { tlsPort, tlsUrl: `mongodb://localhost:${tlsPort}/${tlsQuery}` }),
    ...(auth && { authUrl: `mongodb://${credentials}127.0.0.1:${port}/${query}&authSource=admin` }),
    ...(tls && auth && { tlsAuthUrl: `mongodb://${credentials}localhost:${tlsPort}/${tlsQuery}&authSource=admin` }),
    dataDir: dir,
    /** Its Prometheus metrics (the --debug-addr handler): per-command request counters and more. */
    metricsUrl: `http://127.0.0.1:${debugPort}/debug/metrics`,
    /** Stops the server and keeps its data (for restart tests). */
    halt,
    /** Starts it again on the same port and data directory. */
    async restart() { await halt(); await launch() },
    async stop() {
      await halt()
      if (!dataDir) rmSync(dir, { recursive: true, force: true })
    },
  }
}

/** MONGO_URL when set, else a fresh FerretDB; `stop()` is a no-op for MONGO_URL. */
export async function testServer() {
  if (process.env.MONGO_URL) return { url: process.env.MONGO_URL, external: true, stop: async () => {} }
  return startFerretDB()
}
