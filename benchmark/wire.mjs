// Counts the bytes a library sends to the server and receives from it: a
// plain TCP relay in the benchmark's parent process, in front of the local
// server, one per measurement. The worker reads the counts over HTTP
// (`GET <countsUrl>` → `{ toServer, fromServer }`), at the instants it
// chooses. Toxiproxy's own byte counters are no use here: they are added up
// only when a connection closes, and a driver keeps its connections open.
import http from 'node:http'
import net from 'node:net'

/** Resolves once `server` listens on a free loopback port; to that port. */
function listen(server) {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve(server.address().port))
  })
}

/**
 * A relay from a free loopback port to 127.0.0.1:`upstreamPort`. Resolves to
 * `{ port, countsUrl, close() }`; `close()` drops every relayed connection.
 */
export async function startWireCounter(upstreamPort) {
  const bytes = { toServer: 0, fromServer: 0 }
  const sockets = new Set()
  const track = (socket) => {
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
    // A reset on one side ends the pair; the driver sees a closed connection.
    socket.on('error', () => {})
  }
  const relay = net.createServer((client) => {
    const server = net.connect(upstreamPort, '127.0.0.1')
    track(client)
    track(server)
    client.on('data', (chunk) => { bytes.toServer += chunk.length })
    server.on('data', (chunk) => { bytes.fromServer += chunk.length })
    client.pipe(server)
    server.pipe(client)
    client.once('close', () => server.destroy())
    server.once('close', () => client.destroy())
  })
  const counts = http.createServer((_, res) => {
    res.setHeader('content-type', 'application/json')
    res.end(JSON.stringify(bytes))
  })
  const port = await listen(relay)
  const countsPort = await listen(counts)
  return {
    port,
    countsUrl: `http://127.0.0.1:${countsPort}/`,
    async close() {
      for (const socket of sockets) socket.destroy()
      await Promise.all([relay, counts].map((s) => new Promise((resolve) => s.close(() => resolve()))))
    },
  }
}

/** `{ toServer, fromServer }` so far, read in the worker from `countsUrl`. */
export async function readWireCounts(countsUrl) {
  const res = await fetch(countsUrl, { signal: AbortSignal.timeout(10_000) })
  if (!res.ok) throw new Error(`reading the byte counts at ${countsUrl} failed with ${res.status}`)
  return res.json()
}
