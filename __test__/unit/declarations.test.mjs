// The published declarations (index.d.ts, lib/hapi.d.ts) as a TypeScript user
// meets them: __test__/types/usage.ts must compile, and each misuse in
// __test__/types/must-fail.ts must fail with the error code marked on its line.
import { describe, it, expect } from 'vitest'
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { root } from '../support/suite.mjs'

const typesDir = path.join(root, '__test__', 'types')
const tscBin = path.join(root, 'node_modules', '.bin', 'tsc')

/** `tsc --noEmit -p <project>` → { code, output, errors: [{ file, line, code }] } */
function tsc(project) {
  const run = spawnSync(tscBin, ['--noEmit', '-p', path.join(typesDir, project)], { cwd: root, encoding: 'utf8' })
  const output = `${run.stdout}${run.stderr}`
  const errors = [...output.matchAll(/^(.+?)\((\d+),\d+\): error (TS\d+):/gm)]
    .map(([, file, line, code]) => ({ file: path.basename(file), line: Number(line), code }))
  return { code: run.status, output, errors }
}

/** The `// expect TSxxxx` markers of a file, as { file, line, code }. */
function expectedErrors(file) {
  return readFileSync(path.join(typesDir, file), 'utf8').split('\n').flatMap((text, i) => {
    const marker = text.match(/\/\/ expect (TS\d+)\s*$/)
    return marker ? [{ file, line: i + 1, code: marker[1] }] : []
  })
}

describe('TypeScript declarations', () => {
  it('compile the patterns of the Hapi backends that use mongo-locks: plugin, augmentation, try/finally, await using, helpers, options, errors, stats', () => {
    const run = tsc('tsconfig.json')
    expect(run.output).toBe('')
    expect(run.code).toBe(0)
  })

  it('reject each misuse in must-fail.ts with the expected error, and nothing else', () => {
    const expected = expectedErrors('must-fail.ts')
    expect(expected.length).toBeGreaterThan(10)
    const run = tsc('tsconfig.must-fail.json')
    expect(run.code, run.output).not.toBe(0)
    expect(run.errors, run.output).toEqual(expected)
  })
})
