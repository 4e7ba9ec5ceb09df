// The torture run (__test__/support/torture.mjs; `npm run torture -- --minutes N` for
// longer): 4 processes for 60 s under Toxiproxy latency, hangs and resets,
// wall-clock steps (libfaketime) and SIGSTOP past the ttl. The checker fails
// on any overlap of two believed-held intervals of one key, on fencing
// tokens out of holder order, on a stale write the register accepted, and
// on a worker that hung or crashed. Runs its own FerretDB and Toxiproxy.
import { it, expect } from 'vitest'
import path from 'node:path'
import { runNode, root, describeWithFaketime } from '../support/suite.mjs'

const SECONDS = Number(process.env.TORTURE_SECONDS ?? 60)

// libfaketime (the workers' clock steps): scripts/install-faketime.sh puts
// it in .tools (.ci/run runs it), or the system's. CI must run this test;
// without it elsewhere, one skipped test says what is not checked.
const guarantee = 'no two holders under latency, hangs, resets, clock steps and pauses (the torture run)'
describeWithFaketime(import.meta.url, guarantee)('torture: no two holders under faults', () => {
  it(`4 processes, ${SECONDS} s of latency, hangs, resets, clock steps and pauses: no violation`, async () => {
    const run = await runNode(path.join(root, '__test__', 'support', 'torture.mjs'), ['--seconds', String(SECONDS), '--processes', '4'], {
      timeoutMs: (SECONDS + 90) * 1000,
    })
    const report = JSON.parse(run.stdout.trim().split('\n').pop())
    console.log(`torture: ${JSON.stringify({ ...report, examples: undefined })}`)
    expect(report.overlaps, JSON.stringify(report.examples)).toBe(0)
    expect(report.tokenOrder).toBe(0)
    expect(report.staleWrites).toBe(0)
    expect(report.hung).toBe(0)
    expect(report.crashed, JSON.stringify(report.stderr)).toBe(0)
    expect(report.finished).toBe(4)
    expect(run.code, run.stderr).toBe(0)
    // It really ran under faults, and really locked.
    expect(report.sections).toBeGreaterThan(50)
    expect(report.writesLogged).toBe(report.writesAccepted)
    for (const kind of ['latency', 'hang', 'step', 'pause']) expect(report.faults[kind], kind).toBeGreaterThan(0)
  }, (SECONDS + 120) * 1000)
})
