// `npm run demo`: a few worker processes contend for a few keys through
// mongo-locks-native. Prints who held which key when, and checks that no
// two holders of one key ever overlapped.
import { spawn } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { testServer } from '../__test__/support/ferretdb.mjs'
import { buildAddon } from '../scripts/build.mjs'

const here = path.dirname(fileURLToPath(import.meta.url))
const WORKERS = 4
const ROUNDS = 3

const node = process.env.npm_node_execpath || process.execPath
// SKIP_BUILD: the addon is already built (the test that runs this demo).
if (!process.env.SKIP_BUILD && buildAddon({ node }) !== 0) process.exit(1)
const server = await testServer()
console.log(`MongoDB: ${server.external ? 'MONGO_URL' : 'a local FerretDB 1.24.2 (SQLite backend), started for this demo'}\n`)

const collection = `demo-${Date.now()}`
let sections = []
try {
  const runs = Array.from({ length: WORKERS }, (_, i) => new Promise((resolve, reject) => {
    const child = spawn(node, [path.join(here, 'worker.mjs'), `worker-${i + 1}`, collection, String(ROUNDS)], {
      env: { ...process.env, MONGO_URL: server.url },
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    let out = ''
    child.stdout.on('data', (d) => { out += d })
    child.on('exit', (code) => code === 0 ? resolve(out) : reject(new Error(`worker-${i + 1} exited with ${code}`)))
  }))
  sections = (await Promise.all(runs)).flatMap((out) => out.trim().split('\n').map((l) => JSON.parse(l)))
} finally {
  await server.stop()
}

const t0 = Math.min(...sections.map((s) => s.start))
let overlaps = 0
for (const key of [...new Set(sections.map((s) => s.key))]) {
  const held = sections.filter((s) => s.key === key).sort((a, b) => a.start - b.start)
  console.log(`${key}`)
  held.forEach((s, i) => {
    const clash = i > 0 && s.start < held[i - 1].end
    if (clash) overlaps++
    const waited = s.attempts > 1 ? `  (got it on attempt ${s.attempts})` : ''
    console.log(`  ${String(s.start - t0).padStart(5)}–${String(s.end - t0).padEnd(5)} ms  ${s.worker}${waited}${clash ? '  ✗ OVERLAP' : ''}`)
  })
}
const contended = sections.filter((s) => s.attempts > 1).length
console.log(`\n${sections.length} critical sections by ${WORKERS} processes on 3 keys; ${contended} had to wait for another holder.`)
if (overlaps) {
  console.log(`✗ ${overlaps} overlapping holders`)
  process.exit(1)
}
console.log('✓ no two holders of a key overlapped')
