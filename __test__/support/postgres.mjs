// A throwaway PostgreSQL cluster on a free loopback port, for FerretDB's
// PostgreSQL backend: what the tests of many held locks and a slow server
// run on (FerretDB's SQLite backend reads every document of a collection
// for a filter, and takes about a second to update a thousand). Uses the
// machine's PostgreSQL (Debian's postgresql-15, in /usr/lib/postgresql);
// PostgreSQL refuses to run as root, so as root it runs as `postgres`.
import { execFileSync } from 'node:child_process'
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { freePort } from './ferretdb.mjs'

/** The newest PostgreSQL's bin directory under /usr/lib/postgresql, or null. */
export function postgresBin() {
  const base = '/usr/lib/postgresql'
  if (!existsSync(base)) return null
  const versions = readdirSync(base).filter((v) => existsSync(path.join(base, v, 'bin', 'initdb'))).sort((a, b) => b - a)
  return versions.length ? path.join(base, versions[0], 'bin') : null
}

/**
 * Starts a cluster (trust authentication, no fsync: a test's data) with one
 * database, `ferretdb`; resolves to `{ url, stop() }`, `url` being the
 * connection string FerretDB's --postgresql-url takes.
 */
export async function startPostgres() {
  const bin = postgresBin()
  if (!bin) throw new Error('PostgreSQL is not installed (Debian: apt-get install postgresql)')
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mongo-locks-postgres-'))
  const asRoot = process.getuid?.() === 0
  if (asRoot) {
    const { uid, gid } = userIds('postgres')
    chownSync(dir, uid, gid)
  }
  const run = (tool, args) => {
    const [cmd, argv] = asRoot ? ['runuser', ['-u', 'postgres', '--', path.join(bin, tool), ...args]] : [path.join(bin, tool), args]
    return execFileSync(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'], cwd: dir })
  }
  const data = path.join(dir, 'data')
  run('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync'])
  const port = await freePort()
  const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200`
  run('pg_ctl', ['-D', data, '-o', options, '-l', path.join(dir, 'log'), '-w', 'start'])
  run('createdb', ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', 'ferretdb'])
  return {
    // pool_max_conns: FerretDB 1.24 on PostgreSQL stalls for good when more
    // commands run at once than its pool has connections (about 50 by
    // default). A driver runs up to 100 at once per server (maxPoolSize), and
    // stock mongo-locks' per-lock refreshes of 10,000 locks get there: give
    // FerretDB more than that (max_connections above leaves room for it).
    url: `postgres://postgres@127.0.0.1:${port}/ferretdb?pool_max_conns=150`,
    async stop() {
      try {
        run('pg_ctl', ['-D', data, '-m', 'immediate', 'stop'])
      } catch {}
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

function userIds(name) {
  const out = execFileSync('id', [name], { encoding: 'utf8' })
  return { uid: Number(/uid=(\d+)/.exec(out)[1]), gid: Number(/gid=(\d+)/.exec(out)[1]) }
}
