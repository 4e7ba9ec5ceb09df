// Starts a throwaway Toxiproxy server on a free loopback port, so tests can put
// a TCP proxy between the driver and FerretDB and inject real network faults
// (latency, hung or reset connections, a closed port) through its HTTP API.
import { spawn, execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { freePort } from './ferretdb.mjs'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
export const TOXIPROXY_BIN = path.join(root, '.tools', 'bin', 'toxiproxy-server')

// The server logs every API request; keep only the tail for error messages.
const LOG_LIMIT = 64 * 1024

/** Builds Toxiproxy if .tools/bin/toxiproxy-server is missing (scripts/install-toxiproxy.sh). */
export function ensureToxiproxy() {
  if (!existsSync(TOXIPROXY_BIN)) {
    execFileSync('bash', [path.join(root, 'scripts', 'install-toxiproxy.sh')], { stdio: 'inherit' })
  }
}

async function call(apiUrl, method, route, body) {
  const res = await fetch(apiUrl + route, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  })
  const text = await res.text()
  if (!res.ok) throw new Error(`Toxiproxy ${method} ${route} failed with ${res.status}: ${text.trim()}`)
  return text ? JSON.parse(text) : null
}

/**
 * Starts `toxiproxy-server` and resolves to `{ apiUrl, stop(), proxy(name, upstreamPort), logs() }`.
 * Its output goes to a buffer (`logs()`), shown in startup errors. `stop()` kills it
 * (SIGTERM, SIGKILL after 5 s) and resolves when it exited; every proxy goes with it.
 */
export async function startToxiproxy() {
  ensureToxiproxy()
  const port = await freePort()
  const apiUrl = `http://127.0.0.1:${port}`
  const child = spawn(TOXIPROXY_BIN, ['-host', '127.0.0.1', '-port', String(port)], {
    stdio: ['ignore', 'pipe', 'pipe'],
    // Its default level is trace: a line per API call and per closed link.
    env: { ...process.env, LOG_LEVEL: 'info' },
  })
  let output = ''
  const log = (d) => { output = (output + d).slice(-LOG_LIMIT) }
  child.stdout.on('data', log)
  child.stderr.on('data', log)
  let spawnError
  child.once('error', (err) => { spawnError = err })
  const exited = new Promise((resolve) => child.once('exit', resolve))
  // A crashed test runner must not leave the server behind.
  const killOnExit = () => child.kill('SIGKILL')
  process.once('exit', killOnExit)

  const stop = async () => {
    process.removeListener('exit', killOnExit)
    if (child.exitCode === null && child.signalCode === null && !spawnError) {
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
      child.kill('SIGTERM')
      await exited
      clearTimeout(timer)
    }
  }

  const deadline = Date.now() + 20_000
  for (;;) {
    try {
      await call(apiUrl, 'GET', '/version')
      break
    } catch {
      // not listening yet
    }
    const why = spawnError ? `could not start: ${spawnError.message}`
      : child.exitCode !== null || child.signalCode !== null ? `exited with ${child.exitCode ?? child.signalCode}`
        : Date.now() > deadline ? `did not answer GET ${apiUrl}/version within 20 s` : null
    if (why) {
      await stop()
      throw new Error(`Toxiproxy ${why}: ${output || '(no output)'}`)
    }
    await new Promise((r) => setTimeout(r, 50))
  }

  return {
    apiUrl,
    stop,
    /** The server's recent output (last 64 KiB). */
    logs: () => output,
    /**
     * Creates proxy `name` on a free loopback port, forwarding to 127.0.0.1:upstreamPort.
     * Resolves to `{ name, port, addToxic, removeToxic, clearToxics, disable, enable }`.
     */
    async proxy(name, upstreamPort) {
      // Port 0: Toxiproxy binds a free port itself and reports it back (no
      // race with freePort()); disable()/enable() reuse that same port.
      const created = await call(apiUrl, 'POST', '/proxies', {
        name,
        listen: '127.0.0.1:0',
        upstream: `127.0.0.1:${upstreamPort}`,
        enabled: true,
      })
      const route = `/proxies/${encodeURIComponent(name)}`
      return {
        name,
        port: Number(created.listen.slice(created.listen.lastIndexOf(':') + 1)),
        /**
         * Adds a toxic and resolves to its name (default `<type>_<stream>`). Types and
         * attributes as in Toxiproxy: latency {latency, jitter}, timeout {timeout} (0 =
         * swallow the data and hold the connection forever; removing it closes the
         * connections it held), reset_peer {timeout}, bandwidth {rate}, slow_close
         * {delay}, limit_data {bytes}. `stream` is 'downstream' (server → client) or
         * 'upstream'; `toxicity` is the share of connections affected (0..1).
         */
        async addToxic(type, attributes = {}, { stream = 'downstream', toxicity = 1, name: toxicName } = {}) {
          const body = { type, stream, toxicity, attributes }
          if (toxicName !== undefined) body.name = toxicName
          const toxic = await call(apiUrl, 'POST', `${route}/toxics`, body)
          return toxic.name
        },
        /** Removes one toxic by name. */
        async removeToxic(toxicName) {
          await call(apiUrl, 'DELETE', `${route}/toxics/${encodeURIComponent(toxicName)}`)
        },
        /** Removes every toxic of this proxy. */
        async clearToxics() {
          const toxics = await call(apiUrl, 'GET', `${route}/toxics`)
          for (const t of toxics) await call(apiUrl, 'DELETE', `${route}/toxics/${encodeURIComponent(t.name)}`)
        },
        /** Closes the listening port and drops every open connection (connection refused). */
        async disable() { await call(apiUrl, 'PATCH', route, { enabled: false }) },
        /** Listens again, on the same port. */
        async enable() { await call(apiUrl, 'PATCH', route, { enabled: true }) },
      }
    },
  }
}
