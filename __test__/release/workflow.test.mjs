// The release workflow (.github/workflows/release.yml) cannot run here: it
// needs GitHub's macOS, Windows and arm64 runners. What can be checked is
// checked: actionlint (with shellcheck on its scripts) finds nothing, and it
// builds every configured target, tests each platform (Alpine and macOS arm64
// among them) and publishes with provenance on a version tag only.
import { describe, it, expect } from 'vitest'
import { spawnSync } from 'node:child_process'
import { existsSync, readFileSync, readdirSync } from 'node:fs'
import path from 'node:path'
import { root } from '../support/suite.mjs'
import { ACTIONLINT } from '../support/platforms.mjs'

const WORKFLOWS = path.join(root, '.github', 'workflows')
const release = readFileSync(path.join(WORKFLOWS, 'release.yml'), 'utf8')
const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8'))
const hasActionlint = existsSync(ACTIONLINT)
if (process.env.CI && !hasActionlint) throw new Error('actionlint is missing: bash scripts/install-cross.sh')

/** The lines of one job (from its key to the next job's). */
function job(name) {
  const start = release.indexOf(`\n  ${name}:\n`)
  if (start < 0) throw new Error(`no job ${name}`)
  const next = release.slice(start + 1).search(/\n {2}[A-Za-z][\w-]*:\n/)
  return next < 0 ? release.slice(start) : release.slice(start, start + 1 + next)
}

describe('release workflow', () => {
  it.runIf(hasActionlint)('passes actionlint (and shellcheck on its run: scripts)', () => {
    const files = readdirSync(WORKFLOWS).filter((f) => /\.ya?ml$/.test(f)).map((f) => path.join(WORKFLOWS, f))
    const run = spawnSync(ACTIONLINT, ['-color=false', ...files], { cwd: root, encoding: 'utf8' })
    expect(`${run.stdout}${run.stderr}`).toBe('')
    expect(run.status).toBe(0)
  })

  it('builds every configured target, macOS and Windows on their own runners', () => {
    const build = job('build')
    for (const triple of pkg.napi.targets) expect(build).toContain(`target: ${triple}`)
    expect(build).toMatch(/host: macos-latest\n\s+target: aarch64-apple-darwin/)
    expect(build).toMatch(/host: macos-latest\n\s+target: x86_64-apple-darwin/)
    expect(build).toMatch(/host: windows-latest\n\s+target: x86_64-pc-windows-msvc/)
    expect(build).toContain('name: bindings-${{ matrix.settings.target }}')
  })

  it('tests each platform: macOS arm64 and x64, Windows, Linux in slim and Alpine containers, arm64 on arm64 runners', () => {
    const other = job('test-macOS-windows-binding')
    expect(other).toMatch(/host: macos-latest\n\s+target: aarch64-apple-darwin\n\s+platform: darwin-arm64\n\s+architecture: arm64/)
    expect(other).toMatch(/host: windows-latest\n\s+target: x86_64-pc-windows-msvc/)
    expect(other).toContain('node scripts/release-smoke.mjs')
    const linux = job('test-linux-binding')
    for (const triple of pkg.napi.targets.filter((t) => t.includes('linux'))) expect(linux).toContain(`- ${triple}`)
    expect(linux).toContain('image="node:${NODE_VERSION}-alpine"')
    expect(linux).toContain("'ubuntu-24.04-arm'")
    expect(linux).toContain('node scripts/release-smoke.mjs')
  })

  it('publishes on a version tag only, with provenance, through napi artifacts and prepublish', () => {
    expect(release).toMatch(/tags:\n\s+- 'v\*'/)
    const publish = job('publish')
    expect(publish).toContain("if: ${{ startsWith(github.ref, 'refs/tags/v') }}")
    expect(publish).toMatch(/id-token: write/)
    expect(publish).toContain('npm config set provenance true')
    expect(publish).toContain('npx napi create-npm-dirs')
    expect(publish).toContain('npm run artifacts')
    expect(publish).toMatch(/needs:\n\s+- test-macOS-windows-binding\n\s+- test-linux-binding/)
    expect(pkg.scripts.prepublishOnly).toBe('napi prepublish -t npm')
    expect(pkg.scripts.artifacts).toBe('napi artifacts')
  })
})
