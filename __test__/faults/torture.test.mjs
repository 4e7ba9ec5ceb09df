// The torture run (__test__/support/torture.mjs; `npm run torture -- --minutes N` for
// longer): 4 processes for 60 s taking locks and calling once() under
// Toxiproxy latency, hangs and resets, wall-clock steps (libfaketime),
// SIGSTOP past the ttl, and SIGKILL of a process inside a once() run (a new
// process takes its place). The checker fails on any overlap of two
// believed-held intervals of one key (lock sections, and once() runs), on
// fencing tokens out of holder order, on a stale write the register
// accepted, on a once() key run again while its stored result lives, on a
// call given a value that is not its key's stored result, on a once() run
// taken over though its holder was not lost, and on a worker that hung or
// crashed. Runs its own FerretDB and Toxiproxy.
import { it, expect } from 'vitest'
import path from 'node:path'
import { runNode, root, describeWithFaketime } from '../support/suite.mjs'

const SECONDS = Number(process.env.TORTURE_SECONDS ?? 60)

// libfaketime (the workers' clock steps): scripts/install-faketime.sh puts
// it in .tools (.ci/run runs it), or the system's. CI must run this test;
// without it elsewhere, one skipped test says what is not checked.
const guarantee = 'no two holders and no second once() run under latency, hangs, resets, clock steps, pauses and kills (the torture run)'
describeWithFaketime(import.meta.url, guarantee)('torture: no two holders under faults', () => {
  it(`4 processes, ${SECONDS} s of latency, hangs, resets, clock steps, pauses and kills: no violation`, async () => {
    const run = await runNode(path.join(root, '__test__', 'support', 'torture.mjs'), ['--seconds', String(SECONDS), '--processes', '4'], {
      timeoutMs: (SECONDS + 90) * 1000,
    })
    const report = JSON.parse(run.stdout.trim().split('\n').pop())
    console.log(`torture: ${JSON.stringify({ ...report, examples: undefined, onceExamples: undefined })}`)
    expect(report.overlaps, JSON.stringify(report.examples)).toBe(0)
    expect(report.tokenOrder).toBe(0)
    expect(report.staleWrites).toBe(0)
    const once = JSON.stringify(report.onceExamples)
    expect(report.onceOverlaps, once).toBe(0)
    expect(report.runsAfterCompletion, once).toBe(0)
    expect(report.wrongReplays, once).toBe(0)
    expect(report.onceTokenOrder, once).toBe(0)
    expect(report.takeoversWithoutLoss, once).toBe(0)
    expect(report.hung).toBe(0)
    expect(report.crashed, JSON.stringify(report.stderr)).toBe(0)
    expect(report.finished).toBe(4) // the killed workers' replacements included
    expect(run.code, run.stderr).toBe(0)
    // It really ran under faults, and really locked and ran once() calls:
    // first runs, replays, and runs taken over from a lost holder.
    expect(report.sections).toBeGreaterThan(50)
    expect(report.onceCalls).toBeGreaterThan(50)
    expect(report.onceKeys).toBeGreaterThan(SECONDS / 10)
    expect(report.onceReplays).toBeGreaterThan(20)
    expect(report.onceTakeovers).toBeGreaterThan(0)
    // Every write the workers saw accepted is in the register's log; a
    // write may be logged without its record when its worker was killed
    // right after it.
    expect(report.writesLogged).toBeGreaterThanOrEqual(report.writesAccepted)
    expect(report.writesLogged - report.writesAccepted).toBeLessThanOrEqual(report.faults.kill)
    for (const kind of ['latency', 'hang', 'step', 'pause', 'kill']) expect(report.faults[kind], kind).toBeGreaterThan(0)
  }, (SECONDS + 120) * 1000)
})
