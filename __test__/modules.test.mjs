// Both module systems load the package by its name, on the Node running the
// suite and on Node 24.
import { describe, it, expect } from 'vitest'
import { spawnSync } from 'node:child_process'
import { root, node24 } from './support.mjs'

const names = ['LockManager', 'Lock', 'MongoLocksError', 'LockLostError', 'acquireLock', 'requireLock', 'hapiPlugin']
const cjs = `const m = require('mongo-locks-native'); console.log(JSON.stringify(${JSON.stringify(names)}.map((n) => typeof m[n])))`
const esm = `import { ${names.join(', ')} } from 'mongo-locks-native'; import def from 'mongo-locks-native'; console.log(JSON.stringify([${names.join(', ')}].map((v) => typeof v).concat(typeof def.LockManager)))`

function run(node, args) {
  // The package resolves itself by name from inside its own folder (package.json "exports").
  const r = spawnSync(node, args, { cwd: root, encoding: 'utf8' })
  expect(r.status, r.stderr).toBe(0)
  return JSON.parse(r.stdout)
}

describe('module systems', () => {
  for (const [label, node] of [['this Node', process.execPath], ['Node 24', node24]]) {
    it(`require('mongo-locks-native') works on ${label}`, () => {
      expect(run(node, ['-e', cjs])).toEqual(['function', 'function', 'function', 'function', 'function', 'function', 'object'])
    })
    it(`import … from 'mongo-locks-native' works on ${label}`, () => {
      expect(run(node, ['--input-type=module', '-e', esm])).toEqual(['function', 'function', 'function', 'function', 'function', 'function', 'object', 'function'])
    })
  }
})
