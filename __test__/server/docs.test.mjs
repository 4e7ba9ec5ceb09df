// What users read stays readable and true: no references to a work tracker
// ("issue 14", "#12", "target (6a)") in the docs, the types or the messages;
// the README stays a short front door; every relative link lands on a file
// (and a heading); every JavaScript block of the README and docs/*.md is a
// complete program that parses and runs as written, or a fragment that says
// so and parses (the convention is at "The code blocks", below).
import { describe, it, expect, afterAll } from 'vitest'
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { createRequire } from 'node:module'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
const read = (rel) => readFileSync(path.join(root, rel), 'utf8')
const node24 = path.join(root, 'node_modules', 'node', 'bin', 'node')

/** Files below `dir` (relative to the root) whose names end with `ext`, recursively. */
function filesUnder(dir, ext) {
  const abs = path.join(root, dir)
  if (!existsSync(abs)) return []
  return readdirSync(abs, { withFileTypes: true }).flatMap((entry) => {
    const rel = path.join(dir, entry.name)
    if (entry.isDirectory()) return filesUnder(rel, ext)
    return entry.name.endsWith(ext) ? [rel] : []
  })
}

// --- Tracker words ---

/** What reads as a reference to a work tracker rather than to the product. */
const TRACKER = [
  /\bissues?\s*#?\d+/i, // "issue 14", "issues #3"
  /(?<![\w&#/])#\d+\b/, // "#12" (not "&#8212;", not a URL fragment)
  /\btargets?\s*\(?\d+[a-z]?\)?(?![\w.-])/i, // "target 7", "target (6a)"
  /\(\d+[a-z]\)/, // "(6a)"
  /^\|\s*\(\d+\)\s/, // a table row labelled "(4)", as a list of numbered targets has them
  /\bstop\s+\d+\b/i, // "stop 3"
  /\bthe issue'?s\b/i, // "the issue's targets"
]
/** Web addresses are other projects' trackers, cited on purpose (npm/cli/issues/4828). */
const withoutUrls = (text) => text.replace(/\bhttps?:\/\/[^\s)'"`>]+/g, '')

/** `{ line, text }` of every line of `text` with a tracker reference. */
function trackerHits(text, firstLine = 1) {
  const hits = []
  withoutUrls(text).split('\n').forEach((line, i) => {
    const found = TRACKER.map((re) => re.exec(line)).find(Boolean)
    if (found) hits.push({ line: firstLine + i, match: found[0], text: line.trim().slice(0, 160) })
  })
  return hits
}

/**
 * The string literals of Rust source, with their line numbers: "…", r#"…"#,
 * b"…". Comments and char literals are skipped (lifetimes are not literals).
 */
function rustStringLiterals(src) {
  const out = []
  const lineAt = (i) => src.slice(0, i).split('\n').length
  let i = 0
  while (i < src.length) {
    if (src.startsWith('//', i)) {
      const end = src.indexOf('\n', i)
      i = end < 0 ? src.length : end
    } else if (src.startsWith('/*', i)) {
      const end = src.indexOf('*/', i + 2)
      i = end < 0 ? src.length : end + 2
    } else if (/^b?r#*"/.test(src.slice(i, i + 260)) && !/[\w]/.test(src[i - 1] ?? '')) {
      const [open, hashes] = /^b?r(#*)"/.exec(src.slice(i, i + 260))
      const close = `"${hashes}`
      const end = src.indexOf(close, i + open.length)
      const stop = end < 0 ? src.length : end
      out.push({ line: lineAt(i), text: src.slice(i + open.length, stop) })
      i = stop + close.length
    } else if (src[i] === '"') {
      let j = i + 1
      while (j < src.length && src[j] !== '"') j += src[j] === '\\' ? 2 : 1
      out.push({ line: lineAt(i), text: src.slice(i + 1, j) })
      i = j + 1
    } else if (src[i] === "'") {
      const char = /^'(?:\\u\{[0-9a-fA-F]+\}|\\.|[^\\'])'/.exec(src.slice(i, i + 12))
      i += char ? char[0].length : 1
    } else {
      i++
    }
  }
  return out
}

describe('no work-tracker references in what users read', () => {
  const docs = ['README.md', 'benchmark/README.md', ...filesUnder('docs', '.md')]
  const rootFiles = readdirSync(root)
  // index.d.ts, types-header.d.ts, lib/hapi.d.ts, lib/testing.d.ts…
  const types = [...rootFiles.filter((f) => f.endsWith('.d.ts')), ...filesUnder('lib', '.d.ts')]
  // index.js, lib/hapi.js, lib/client-settings.js, lib/primitives.js, lib/metrics.js, lib/native-loader.js, lib/testing.js…, and the CLI
  const js = [...rootFiles.filter((f) => f.endsWith('.js')), ...filesUnder('lib', '.js'), ...filesUnder('bin', '.js')]

  it('the checker finds what it is meant to find, and leaves the rest', () => {
    for (const bad of ['see issue 14 below', 'Issue 14: CPU', 'fixed in #12', 'target (6a)', 'the targets (4) and (5)', 'met target 7', 'at stop 3', "the issue's targets", '(6b) row', '| (4) no timer per lock | met |']) {
      expect(trackerHits(bad), bad).toHaveLength(1)
    }
    for (const good of [
      'https://github.com/npm/cli/issues/4828', '--target x86_64-unknown-linux-gnu.2.17', 'unknown issuer',
      'an issue with the server', 'election.stop() → next leader', '1. Uncontended latency', 'permit 3 of 4',
      '&#8212;', 'docs/guarantees.md#the-torture-run',
    ]) {
      expect(trackerHits(good), good).toEqual([])
    }
    expect(rustStringLiterals('let a = "x // y"; // issue 14\nlet b = r#"say "issue 3""#; let c = \'"\'; fn f<\'a>() {}').map((s) => s.text))
      .toEqual(['x // y', 'say "issue 3"'])
  })

  it('covers the files named in the package', () => {
    expect(types).toEqual(expect.arrayContaining(['index.d.ts', 'types-header.d.ts', 'lib/hapi.d.ts', 'lib/testing.d.ts']))
    expect(js).toEqual(expect.arrayContaining(['index.js', 'lib/hapi.js', 'lib/client-settings.js', 'lib/primitives.js', 'lib/metrics.js', 'lib/native-loader.js', 'lib/rules.js', 'lib/testing.js', 'bin/mongo-locks-native.js']))
  })

  it.each([...docs, ...types])('%s', (file) => {
    expect(trackerHits(read(file))).toEqual([])
  })

  it.each(js)('%s (in full: messages and comments)', (file) => {
    expect(trackerHits(read(file))).toEqual([])
  })

  it("the Rust sources' string literals (the messages users see)", () => {
    const hits = filesUnder('src', '.rs').flatMap((file) =>
      rustStringLiterals(read(file)).flatMap(({ line, text }) => trackerHits(text, line).map((h) => ({ file, ...h }))))
    expect(hits).toEqual([])
  })
})

// --- The README's length ---

describe('the README is a front door', () => {
  it('is at most 360 lines', () => {
    expect(read('README.md').split('\n').length).toBeLessThanOrEqual(360)
  })

  it('keeps the two commands of a fresh clone', () => {
    const readme = read('README.md')
    expect(readme).toContain('npm ci && npm run demo')
    expect(readme).toContain('npm ci && npm test')
    expect(readme).toMatch(/Needs Rust, Go and Node\.js ≥ 20/)
  })
})

// --- Links ---

/** Markdown without its fenced code blocks and code spans (links there are not links). */
const proseOf = (markdown) => markdown.replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[^\n]*$/gm, '').replace(/`[^`\n]*`/g, '')

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens. */
const slug = (heading) => heading.trim().toLowerCase().replace(/<[^>]*>/g, '').replace(/[^\p{L}\p{M}\p{N}\p{Pc}\- ]/gu, '').replace(/ /g, '-')

/** The anchors of a Markdown file's headings (repeated headings get -1, -2, as on GitHub). */
function anchorsOf(file) {
  const seen = new Map()
  const anchors = new Set()
  const withoutFences = read(file).replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[^\n]*$/gm, '')
  for (const [, text] of withoutFences.matchAll(/^#{1,6}\s+(.+?)\s*#*\s*$/gm)) {
    const base = slug(text)
    const n = seen.get(base) ?? 0
    seen.set(base, n + 1)
    anchors.add(n === 0 ? base : `${base}-${n}`)
  }
  return anchors
}

describe('every relative link resolves', () => {
  const pages = ['README.md', 'benchmark/README.md', ...filesUnder('docs', '.md')]

  it('the slugs are GitHub-shaped', () => {
    expect(slug('Fencing tokens with a conditional update')).toBe('fencing-tokens-with-a-conditional-update')
    expect(slug('Command line: `npx mongo-locks-native`')).toBe('command-line-npx-mongo-locks-native')
    expect(slug('What holds, and how it is tested')).toBe('what-holds-and-how-it-is-tested')
  })

  it.each(pages)('%s', (page) => {
    const broken = []
    for (const [, target] of proseOf(read(page)).matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) {
      if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue // https:, mailto:
      const [file, anchor] = target.split('#')
      const rel = file === '' ? page : path.normalize(path.join(path.dirname(page), decodeURIComponent(file)))
      if (!existsSync(path.join(root, rel))) {
        broken.push(`${target}: no file ${rel}`)
        continue
      }
      if (anchor && rel.endsWith('.md') && statSync(path.join(root, rel)).isFile() && !anchorsOf(rel).has(anchor)) {
        broken.push(`${target}: no heading #${anchor} in ${rel}`)
      }
    }
    expect(broken).toEqual([])
  })
})

// --- The API reference covers the declarations ---

/** The names a declaration file exports: `export interface X`, `export declare class X`, `export { X } from`… */
function exportedNames(file) {
  const text = read(file)
  const declared = [...text.matchAll(/^export\s+(?:declare\s+)?(?:interface|type|class|const|function|namespace)\s+(\w+)/gm)].map((m) => m[1])
  const reexported = [...text.matchAll(/^export\s+(?:type\s+)?\{([^}]*)\}\s+from/gm)].flatMap((m) => m[1].split(',').map((n) => n.trim().split(/\s+as\s+/).at(-1)))
  return [...new Set([...declared, ...reexported].filter(Boolean))]
}

/** The members of `LockManager` (class and interface of index.d.ts): methods and getters. */
function lockManagerMembers() {
  const text = read('index.d.ts')
  const bodies = [...text.matchAll(/^export\s+(?:declare\s+class|interface)\s+LockManager\s*\{\n([\s\S]*?)^\}/gm)].map((m) => m[1])
  return [...new Set(bodies.flatMap((body) => [...body.matchAll(/^ {2}(?:readonly\s+|get\s+)?(\w+)\s*[(:<]/gm)].map((m) => m[1])))]
    .filter((n) => n !== 'constructor')
}

describe('docs/api.md covers what the declarations export', () => {
  const reference = ['docs/api.md', 'docs/testing.md', 'docs/primitives.md'].map(read).join('\n')
  const named = (name) => new RegExp(`\\b${name.replace(/\$/g, '\\$')}\\b`).test(reference)

  it('the readers of the declarations find what they should', () => {
    expect(exportedNames('lib/testing.d.ts')).toEqual(expect.arrayContaining(['createTestLocker', 'TestLocker', 'TestLockerOptions', 'TestLockerEvent', 'MongoLocksError', 'LockLostError']))
    expect(lockManagerMembers()).toEqual(expect.arrayContaining(['lock', 'lockAll', 'metricsSnapshot', 'held', 'inspect', 'schedule']))
  })

  it.each(['index.d.ts', 'lib/hapi.d.ts', 'lib/testing.d.ts'])('every export of %s is named in the docs', (file) => {
    expect(exportedNames(file).filter((name) => !named(name))).toEqual([])
  })

  it('every member of LockManager is named in docs/api.md', () => {
    const api = read('docs/api.md')
    expect(lockManagerMembers().filter((m) => !new RegExp(`\\b${m}\\b`).test(api))).toEqual([])
  })
})

// --- The code blocks of the README and docs/*.md ---
//
// The convention, for every ```js block of README.md and docs/*.md:
//
// - A block whose first line is `// fragment: <where it goes>` is a piece of a
//   larger program (a route handler, a vitest test…). It is parsed, not run:
//   the `import` statements at its top stay at module level, the rest becomes
//   the body of an async function (fragments use `await` and `return`). A
//   fragment with `require(` is parsed as CommonJS, else as an ES module.
// - Every other block is a complete program, taken as written: an ES module
//   (it has `import`/`export` statements; written to a .mjs file) or CommonJS
//   (no `import`; a .cjs file, so top-level `await` is a syntax error). It
//   passes `node --check`, and it runs against the server under test
//   (`MONGO_URL` set, within a timeout, exit code 0), unless an HTML comment
//   `<!-- not run: <why> -->` right before it says why it cannot run here (a
//   vitest test file runs under vitest).
// - An ES module block never calls `require(`; the names a block imports from
//   `mongo-locks-native` (or `/hapi`, `/testing`) are exports of that entry.
//
// The files are written inside this package (under tmp/, which git ignores),
// so that `mongo-locks-native` resolves to this package by self-reference, as
// `require`/`import` of the package's users resolve it, and `mongodb` and
// `@hapi/hapi` from its node_modules.

/**
 * The ```js blocks of a Markdown file: `{ file, line, code, fragment, notRun, esm }`. `fragment`
 * is the text after `// fragment:`; `notRun` the reason of a `<!-- not run: … -->` before the fence.
 */
function jsBlocks(file) {
  const blocks = []
  const lines = read(file).split('\n')
  for (let i = 0; i < lines.length; i++) {
    if (!/^```(js|javascript|mjs|cjs)\s*$/.test(lines[i])) continue
    const end = lines.findIndex((l, j) => j > i && /^```\s*$/.test(l))
    const code = lines.slice(i + 1, end).join('\n')
    const before = lines.slice(Math.max(0, i - 2), i).join('\n')
    blocks.push({
      file,
      line: i + 1,
      code,
      fragment: /^\/\/ fragment:(.*)/.exec(lines[i + 1])?.[1].trim() ?? null,
      notRun: /<!--\s*not run:\s*(.*?)\s*-->/.exec(before)?.[1] ?? null,
      esm: /^\s*(import\s|export\s)/m.test(code),
    })
    i = end
  }
  return blocks
}

/** A fragment as a module that parses: its leading imports, then the rest inside an async function. */
function wrapFragment(code) {
  const [head] = /^(?:\s*\n|\/\/[^\n]*\n|import\s[^;]*?from\s*'[^']+'[^\n]*\n|import\s*'[^']+'[^\n]*\n)*/.exec(`${code}\n`)
  return `${head}async function fragment() {\n${code.slice(head.length)}\n}\n`
}

/** The names an ES module block imports from this package's entries: `[{ spec, names }]`. */
function packageImports(code) {
  return [...code.matchAll(/^import\s+\{([^}]*)\}\s+from\s+'(mongo-locks-native(?:\/[\w-]+)?)'/gm)].map(([, list, spec]) => ({
    spec,
    names: list.split(',').map((n) => n.trim().split(/\s+as\s+/)[0]).filter(Boolean),
  }))
}

/** Node 24 when installed (it parses `await using`), else this Node. */
const checker = existsSync(node24) ? node24 : process.execPath

describe('the JavaScript of the README and docs/*.md', () => {
  const blocks = ['README.md', ...filesUnder('docs', '.md')].flatMap(jsBlocks)
  const complete = blocks.filter((b) => b.fragment === null)
  const runnable = complete.filter((b) => b.notRun === null)
  mkdirSync(path.join(root, 'tmp'), { recursive: true })
  const dir = mkdtempSync(path.join(root, 'tmp', 'docs-blocks-'))
  const name = (b, suffix) => `${b.file.replace(/[/.]/g, '-')}-${b.line}${suffix}`
  const where = (b) => `${b.file} line ${b.line}`

  it('has blocks of each kind: complete programs that run, and fragments', () => {
    expect(blocks.length).toBeGreaterThan(15)
    expect(runnable.length).toBeGreaterThanOrEqual(4)
    expect(blocks.filter((b) => b.fragment !== null).length).toBeGreaterThanOrEqual(5)
    // The README's first block is a whole program that runs.
    expect(blocks[0]).toMatchObject({ file: 'README.md', fragment: null, notRun: null })
  })

  it('the wrapper keeps a fragment\'s imports at module level', () => {
    expect(wrapFragment("// fragment: x\nimport { a } from 'b'\n\nawait a()")).toBe(
      "// fragment: x\nimport { a } from 'b'\n\nasync function fragment() {\nawait a()\n}\n")
    expect(packageImports("import { plugin as p, x } from 'mongo-locks-native/hapi'\nimport fs from 'node:fs'"))
      .toEqual([{ spec: 'mongo-locks-native/hapi', names: ['plugin', 'x'] }])
  })

  it.each(blocks.map((b) => [where(b), b]))('%s: says what it is', (_, b) => {
    if (b.fragment !== null) expect(b.fragment, 'a fragment says where it goes').not.toBe('')
    if (b.fragment !== null) expect(b.notRun, 'a fragment is never run: no "not run" comment needed').toBeNull()
    if (b.notRun !== null) expect(b.notRun, 'a block not run says why').not.toBe('')
    if (b.esm) expect(b.code, 'an ES module does not call require()').not.toMatch(/\brequire\(/)
  })

  it.each(blocks.map((b) => [where(b), b]))('%s: imports only what the package exports', (_, b) => {
    const require = createRequire(path.join(root, 'package.json'))
    for (const { spec, names } of packageImports(b.code)) {
      const exported = Object.keys(require(spec))
      expect(names.filter((n) => !exported.includes(n)), `${spec} exports these?`).toEqual([])
    }
  })

  it.each(blocks.map((b) => [where(b), b]))('%s: parses as written', (_, b) => {
    if (!existsSync(node24) && /\busing\b/.test(b.code)) return // `await using` needs Node 24's parser
    const asModule = b.fragment === null ? b.esm : !/\brequire\(/.test(b.code)
    const file = path.join(dir, name(b, asModule ? '.mjs' : '.cjs'))
    writeFileSync(file, b.fragment === null ? `${b.code}\n` : wrapFragment(b.code))
    const checked = spawnSync(checker, ['--check', file], { encoding: 'utf8' })
    expect(checked.stderr, where(b)).toBe('')
    expect(checked.status).toBe(0)
  })

  it.each(runnable.map((b) => [where(b), b]))('%s: runs as written against the server under test', async (_, b) => {
    const { mongoUrl } = await import('../support/suite.mjs')
    const { MongoClient } = await import('mongodb')
    // The databases a block writes to (`.db('…')`, `databaseName: '…'`, `database: '…'`),
    // dropped after unless they were there before.
    const dbNames = [...b.code.matchAll(/(?:\.db\(|databaseName:\s*|database:\s*)'([^']+)'/g)].map((m) => m[1])
    const client = await MongoClient.connect(mongoUrl())
    try {
      const before = new Set((await client.db().admin().listDatabases({ nameOnly: true })).databases.map((d) => d.name))
      const file = path.join(dir, name(b, b.esm ? '.run.mjs' : '.run.cjs'))
      writeFileSync(file, `${b.code}\n`)
      const ran = spawnSync(/\busing\b/.test(b.code) ? checker : process.execPath, [file], {
        encoding: 'utf8',
        cwd: dir,
        env: { ...process.env, MONGO_URL: mongoUrl() },
        timeout: 45_000,
      })
      expect(ran.error, where(b)).toBeUndefined()
      expect(ran.status, `${where(b)}: ${ran.stderr}`).toBe(0)
      for (const db of new Set(dbNames)) if (!before.has(db)) await client.db(db).dropDatabase().catch(() => {})
    } finally {
      await client.close()
    }
  })

  afterAll(() => rmSync(dir, { recursive: true, force: true }))
})
