// Starts a throwaway FerretDB (SQLite backend) on a free loopback port, for
// the tests, the demo and the benchmark. With MONGO_URL set, uses that
// server instead and starts nothing.
import { spawn, execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync, existsSync } from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
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

/** Builds FerretDB if .tools/bin/ferretdb is missing (scripts/install-ferretdb.sh). */
export function ensureFerretDB() {
  if (!existsSync(FERRETDB_BIN)) {
    execFileSync('bash', [path.join(root, 'scripts', 'install-ferretdb.sh')], { stdio: 'inherit' })
  }
}

/**
 * Starts FerretDB and resolves to `{ url, port, dataDir, stop(), restart() }`.
 * `dataDir` survives `restart()` (the same data directory), and is removed by `stop()`.
 * `port` picks the port (a test that connects before the server exists); default: a free one.
 */
export async function startFerretDB({ replSetName, dataDir, port: wanted } = {}) {
  ensureFerretDB()
  const dir = dataDir ?? mkdtempSync(path.join(os.tmpdir(), 'mongo-locks-ferretdb-'))
  const port = wanted ?? await freePort()
  const debugPort = await freePort()
  let child
  const launch = async () => {
    const args = [
      `--listen-addr=127.0.0.1:${port}`,
      '--handler=sqlite',
      `--sqlite-url=file:${dir}/`,
      `--state-dir=${dir}`,
      '--telemetry=disable',
      `--debug-addr=127.0.0.1:${debugPort}`,
      '--log-level=error',
    ]
    if (replSetName) args.push(`--repl-set-name=${replSetName}`)
    child = spawn(FERRETDB_BIN, args, { stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    child.stderr.on('data', (d) => { stderr += d })
    const deadline = Date.now() + 20_000
    while (!(await canConnect(port))) {
      if (child.exitCode !== null) throw new Error(`FerretDB exited with ${child.exitCode}: ${stderr}`)
      if (Date.now() > deadline) throw new Error(`FerretDB did not listen on ${port} within 20 s: ${stderr}`)
      await new Promise((r) => setTimeout(r, 50))
    }
  }
  const halt = () => new Promise((resolve) => {
    if (!child || child.exitCode !== null || child.signalCode !== null) return resolve()
    child.once('exit', () => resolve())
    child.kill('SIGTERM')
    setTimeout(() => child.kill('SIGKILL'), 5000).unref()
  })
  await launch()
  const query = replSetName ? `?replicaSet=${replSetName}` : '?directConnection=true'
  return {
    url: `mongodb://127.0.0.1:${port}/${query}`,
    port,
    dataDir: dir,
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
