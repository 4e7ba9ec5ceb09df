// The drop-in type test: a backend written against mongo-locks 3.2.0's API
// (__test__/types/stock-api.ts and its vitest tests, stock-api-mocks.ts)
// type-checks with zero errors against stock mongo-locks 3.2.0 AND against
// this package installed under the name `mongo-locks`, in the same run.
//
// Each compile gets a throwaway project in the OS temp directory, laid out as
// an application's would be:
//   node_modules/mongo-locks  stock: a link to node_modules/mongo-locks (as npm installed it);
//                             ours: a copy of the published files' declarations and
//                             package.json, as `npm install mongo-locks@npm:mongo-locks-native`
//                             puts them (so `exports`/`types` resolve as for a user)
//   node_modules/mongodb, vitest, @types/node   links to this repo's
// so `mongodb` (the peer dependency both declarations import) is the one
// copy both packages and the application see. Nothing resolves through this
// repo's own node_modules/mongo-locks by accident: the projects live outside it.
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { spawn } from 'node:child_process'
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync, existsSync } from 'node:fs'
import { availableParallelism, tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

// Not support/suite.mjs: a type test needs no addon (it may be mid-rebuild).
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')

const typesDir = path.join(root, '__test__', 'types')
const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc')

const BACKEND = 'stock-api.ts'
const MOCKS = 'stock-api-mocks.ts'

const base = {
  strict: true,
  target: 'ES2022',
  lib: ['es2022', 'esnext.disposable'],
  types: ['node'],
  noEmit: true,
}

/**
 * The module settings a backend compiles with. vitest 4's declarations need
 * node16/nodenext/bundler resolution (they import `vite/module-runner`), so a
 * node10 project using them has skipLibCheck on; the node10 compile of the
 * backend alone keeps it off, so that our declarations are checked there too.
 */
const SETTINGS = {
  'nodenext ESM': { type: 'module', files: [BACKEND, MOCKS], options: { module: 'nodenext', moduleResolution: 'nodenext' } },
  'nodenext CommonJS': { type: 'commonjs', files: [BACKEND, MOCKS], options: { module: 'nodenext', moduleResolution: 'nodenext' } },
  'node10 CommonJS': { type: 'commonjs', files: [BACKEND], options: { module: 'commonjs', moduleResolution: 'node10' } },
  'node10 CommonJS, vitest tests (skipLibCheck)': {
    type: 'commonjs',
    files: [BACKEND, MOCKS],
    options: { module: 'commonjs', moduleResolution: 'node10', skipLibCheck: true },
  },
}

/** This package as npm would install it: package.json and the declarations among its `files`. */
function installOurs(dir) {
  mkdirSync(dir, { recursive: true })
  const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8'))
  copyFileSync(path.join(root, 'package.json'), path.join(dir, 'package.json'))
  for (const file of pkg.files) {
    if (file.endsWith('.d.ts')) copyFileSync(path.join(root, file), path.join(dir, file))
  }
}

function link(target, at) {
  mkdirSync(path.dirname(at), { recursive: true })
  symlinkSync(target, at, 'dir')
}

/** A throwaway project compiling `setting.files` against `which` ('stock' | 'ours'). */
function makeProject(parent, which, name, setting) {
  const dir = path.join(parent, `${which}-${name.replace(/[^a-z0-9]+/gi, '-')}`)
  const modules = path.join(dir, 'node_modules')
  mkdirSync(modules, { recursive: true })
  if (which === 'stock') link(path.join(root, 'node_modules', 'mongo-locks'), path.join(modules, 'mongo-locks'))
  else installOurs(path.join(modules, 'mongo-locks'))
  for (const dep of ['mongodb', 'vitest', '@types/node']) link(path.join(root, 'node_modules', dep), path.join(modules, dep))
  writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'backend', private: true, type: setting.type }))
  for (const file of [BACKEND, MOCKS]) copyFileSync(path.join(typesDir, file), path.join(dir, file))
  const tsconfig = { compilerOptions: { ...base, ...setting.options }, files: setting.files }
  writeFileSync(path.join(dir, 'tsconfig.json'), JSON.stringify(tsconfig, null, 2))
  return dir
}

/** `tsc -p dir` → { code, output, errors: ['file(line,col): error TSxxxx: …'] }. */
function compile(dir) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [tsc, '-p', dir, '--pretty', 'false'], { cwd: dir })
    let output = ''
    child.stdout.on('data', (d) => { output += d })
    child.stderr.on('data', (d) => { output += d })
    child.on('error', reject)
    child.on('close', (code) => {
      const errors = output.split('\n').filter((line) => /error TS\d+/.test(line))
      resolve({ code, output, errors })
    })
  })
}

/** Runs `fns` with at most `limit` at a time. */
async function pool(fns, limit) {
  const results = new Array(fns.length)
  let next = 0
  const worker = async () => {
    while (next < fns.length) {
      const i = next++
      results[i] = await fns[i]()
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, fns.length) }, worker))
  return results
}

describe('a backend written against mongo-locks 3.2.0 type-checks against stock and against this package', () => {
  let parent
  const results = {}

  beforeAll(async () => {
    parent = mkdtempSync(path.join(tmpdir(), 'mongo-locks-drop-in-'))
    const jobs = []
    for (const which of ['stock', 'ours']) {
      for (const [name, setting] of Object.entries(SETTINGS)) {
        const dir = makeProject(parent, which, name, setting)
        jobs.push(async () => { results[`${which} / ${name}`] = await compile(dir) })
      }
    }
    await pool(jobs, Math.max(2, availableParallelism()))
  }, 240_000)

  afterAll(() => {
    if (parent && existsSync(parent)) rmSync(parent, { recursive: true, force: true })
  })

  for (const name of Object.keys(SETTINGS)) {
    it(`stock mongo-locks 3.2.0, ${name}: zero errors (the fixture is valid stock code)`, () => {
      const run = results[`stock / ${name}`]
      expect(run.errors, run.output).toEqual([])
      expect(run.code, run.output).toBe(0)
    })

    it(`this package as mongo-locks, ${name}: zero errors`, () => {
      const run = results[`ours / ${name}`]
      expect(run.errors, run.output).toEqual([])
      expect(run.code, run.output).toBe(0)
    })
  }

  it('the fixture uses only stock API: importing something of ours fails the stock compile', async () => {
    // Guards the guard: if `mongo-locks` silently resolved to this package in
    // the stock projects, every check above would pass for the wrong reason.
    const dir = makeProject(parent, 'stock', 'canary', SETTINGS['nodenext CommonJS'])
    writeFileSync(path.join(dir, 'canary.ts'), "import { acquireLock } from 'mongo-locks'\nexport { acquireLock }\n")
    const tsconfig = JSON.parse(readFileSync(path.join(dir, 'tsconfig.json'), 'utf8'))
    writeFileSync(path.join(dir, 'tsconfig.json'), JSON.stringify({ ...tsconfig, files: ['canary.ts'] }))
    const run = await compile(dir)
    expect(run.errors.join('\n')).toMatch(/canary\.ts\(1,10\): error TS2305: .*acquireLock/)
  }, 60_000)
})
