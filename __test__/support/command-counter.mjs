// What a server has been sent, by command, from its own counters: FerretDB's
// Prometheus counter of requests, or, on a real MongoDB (MONGO_URL),
// serverStatus().opcounters. Used by the tests of a private server
// (suite.mjs's usePrivateServer) and by the benchmark's hand-over scenario.
import { MongoClient } from 'mongodb'

const REQUESTS = /^ferretdb_client_requests_total\{([^}]*)\} (\S+)$/

/** FerretDB's requests per command name, from its metrics page. */
async function readFerretDBRequests(metricsUrl) {
  const response = await fetch(metricsUrl)
  if (!response.ok) throw new Error(`${metricsUrl}: HTTP ${response.status}`)
  const byCommand = {}
  for (const line of (await response.text()).split('\n')) {
    const match = REQUESTS.exec(line)
    if (!match) continue
    const command = /command="([^"]*)"/.exec(match[1])?.[1] ?? 'unknown'
    byCommand[command] = (byCommand[command] ?? 0) + Number(match[2])
  }
  return byCommand
}

/**
 * What the server has been sent so far, by command: `read()` resolves to
 * { [command]: count }. Every client of the server counts, not only this
 * run's (the benchmark is alone on its throwaway FerretDB); the drivers'
 * heartbeats (hello) count too, and the note of each run shows them apart.
 */
export async function serverCommandCounter({ url, metricsUrl }) {
  if (metricsUrl) {
    return { source: 'ferretdb_client_requests_total', read: () => readFerretDBRequests(metricsUrl), close: async () => {} }
  }
  const client = await MongoClient.connect(url)
  return {
    // Counts each read's own serverStatus too: one command per run, noise.
    source: 'serverStatus().opcounters',
    async read() {
      const { opcounters } = await client.db('admin').command({ serverStatus: 1 })
      if (!opcounters) throw new Error('serverStatus has no opcounters on this server')
      return Object.fromEntries(['insert', 'query', 'update', 'delete', 'getmore', 'command'].map((k) => [k, Number(opcounters[k] ?? 0)]))
    },
    close: () => client.close(),
  }
}
