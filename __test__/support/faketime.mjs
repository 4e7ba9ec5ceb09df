// Where libfaketime is, for the clock-skew, clock-step and torture tests and
// the torture run: the copy scripts/install-faketime.sh puts in
// .tools/faketime/lib first, then a system one (Debian and Ubuntu's
// package faketime, in /usr/lib/<triple>/faketime; /usr/lib64/faketime;
// /usr/local/lib/faketime, where its own `make install` puts it).
//
// MONGO_LOCKS_FAKETIME_LIB=<file> takes that file and no other: a path that
// does not exist shows what a machine without libfaketime reports.
import { existsSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')

/**
 * Where a test file that could not check its guarantee (no libfaketime)
 * says so, one file per test file; `npm test` prints them at its end.
 */
export const NOT_CHECKED_DIR = path.join(root, 'target', 'test-summary', 'not-checked')

/** The command that installs it, as the messages of a run without it say. */
export const FAKETIME_INSTALL = 'bash scripts/install-faketime.sh'

/** libfaketime's thread-safe build (Node runs threads), or null without it. */
export function faketimeLibrary() {
  const only = process.env.MONGO_LOCKS_FAKETIME_LIB
  const candidates = only
    ? [path.resolve(only)]
    : [
        path.join(root, '.tools', 'faketime', 'lib'),
        ...['x86_64-linux-gnu', 'aarch64-linux-gnu'].map((t) => `/usr/lib/${t}/faketime`),
        '/usr/lib64/faketime',
        '/usr/local/lib/faketime',
      ].map((dir) => path.join(dir, 'libfaketimeMT.so.1'))
  return candidates.find((p) => existsSync(p)) ?? null
}
