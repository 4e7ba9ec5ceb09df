// Both module systems load the package by its name, on the Node running the
// suite and on Node 24; and the package's own modules require each other
// without a circle (a module in a circle can see another half-initialised).
import { describe, it, expect } from 'vitest'
import { spawnSync } from 'node:child_process'
import { readFileSync, readdirSync } from 'node:fs'
import path from 'node:path'
import { root, node24 } from '../support/suite.mjs'

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

/** The package's own JavaScript files, relative to the root: the entry, lib/ and the CLI. */
function packageFiles() {
  const under = (dir) => readdirSync(path.join(root, dir), { recursive: true })
    .filter((f) => f.endsWith('.js'))
    .map((f) => path.join(dir, f))
  return ['index.js', ...under('lib'), ...under('bin')]
}

/** Each file's relative requires (top-level or inside a function), as files relative to the root. */
function requireGraph(files, read) {
  const graph = new Map()
  for (const file of files) {
    const targets = [...read(file).matchAll(/\brequire\(\s*(['"])(\.{1,2}\/[^'"]+)\1\s*\)/g)].map(([, , spec]) => {
      const target = path.join(path.dirname(file), spec)
      return target.endsWith('.js') || target.endsWith('.json') ? target : `${target}.js`
    })
    graph.set(file, targets.filter((t) => !t.endsWith('.json')))
  }
  return graph
}

/** The first circle found in `graph`, as [a, b, …, a], or null. */
function findCycle(graph) {
  const state = new Map() // file → 'open' while on the path, 'done' once explored
  const stack = []
  const visit = (file) => {
    if (state.get(file) === 'done') return null
    if (state.get(file) === 'open') return [...stack.slice(stack.indexOf(file)), file]
    state.set(file, 'open')
    stack.push(file)
    for (const next of graph.get(file) ?? []) {
      const cycle = visit(next)
      if (cycle) return cycle
    }
    stack.pop()
    state.set(file, 'done')
    return null
  }
  for (const file of graph.keys()) {
    const cycle = visit(file)
    if (cycle) return cycle
  }
  return null
}

describe('the package\'s own requires', () => {
  it('the check finds a circle, lazy requires included, and a tree passes', () => {
    const sources = {
      'index.js': "require('./lib/a.js')",
      'lib/a.js': "const b = () => require('./b')",
      'lib/b.js': "require('../index.js')",
    }
    expect(findCycle(requireGraph(Object.keys(sources), (f) => sources[f]))).toEqual(['index.js', 'lib/a.js', 'lib/b.js', 'index.js'])
    sources['lib/b.js'] = "require('./c.js')"
    expect(findCycle(requireGraph(Object.keys(sources), (f) => sources[f]))).toBeNull()
  })

  it('form no circle: index.js, lib/ and bin/', () => {
    const files = packageFiles()
    expect(files).toEqual(expect.arrayContaining(['index.js', 'lib/manager.js', 'lib/hapi.js', 'lib/testing.js', 'lib/rules.js', 'bin/cli/keys.js']))
    const graph = requireGraph(files, (f) => readFileSync(path.join(root, f), 'utf8'))
    // Every relative require names a file of the package (or binding.js, generated at the root).
    for (const targets of graph.values()) {
      for (const t of targets) expect([...files, 'binding.js'], t).toContain(t)
    }
    expect(graph.get('lib/hapi.js')).toContain('lib/manager.js')
    expect(findCycle(graph)).toBeNull()
  })

  it('lib/rules.js, lib/keys.js and lib/testing.js need no native addon: none reaches binding.js', () => {
    const graph = requireGraph(packageFiles(), (f) => readFileSync(path.join(root, f), 'utf8'))
    const reach = (file, seen = new Set()) => {
      for (const next of graph.get(file) ?? []) if (!seen.has(next)) { seen.add(next); reach(next, seen) }
      return seen
    }
    expect(graph.get('lib/rules.js')).toEqual([])
    for (const file of ['lib/keys.js', 'lib/testing.js', 'bin/cli/keys.js']) {
      expect([...reach(file)], file).not.toContain('binding.js')
      expect([...reach(file)], file).not.toContain('lib/native-loader.js')
      expect([...reach(file)], file).not.toContain('lib/manager.js')
      expect([...reach(file)], file).not.toContain('index.js')
    }
  })
})
