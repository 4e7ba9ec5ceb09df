// The command line as npm packs the package: every module of bin/cli/ ships.
import { describe, it, expect } from 'vitest'
import { spawnSync } from 'node:child_process'
import { readdirSync } from 'node:fs'
import path from 'node:path'
import { root } from '../support/suite.mjs'

describe('cli: the package', () => {
  it('ships every module of the command line', () => {
    const run = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], {
      cwd: root,
      encoding: 'utf8',
      env: { ...process.env, npm_config_update_notifier: 'false' },
    })
    expect(run.status, run.stderr).toBe(0)
    const packed = JSON.parse(run.stdout)[0].files.map((f) => f.path)
    const modules = readdirSync(path.join(root, 'bin', 'cli')).filter((f) => f.endsWith('.js'))
    expect(modules.length).toBeGreaterThan(3)
    for (const file of ['bin/mongo-locks-native.js', ...modules.map((f) => `bin/cli/${f}`)]) expect(packed).toContain(file)
  })
})
