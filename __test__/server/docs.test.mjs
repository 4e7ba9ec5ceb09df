// What users read stays readable and true: no references to a work tracker
// ("issue 14", "#12", "target (6a)") in the docs, the types or the messages;
// the README stays a short front door; every relative link lands on a file
// (and a heading); the README's JavaScript parses, and its self-contained
// example runs against the server under test.
import { describe, it, expect, afterAll } from 'vitest'
import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

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

// --- The README's code ---

/** The ```js blocks of a Markdown file: `{ line, code, run }`, `run` when an HTML comment `<!-- run… -->` precedes it. */
function jsBlocks(file) {
  const blocks = []
  const lines = read(file).split('\n')
  for (let i = 0; i < lines.length; i++) {
    if (!/^```(js|javascript|mjs|cjs)\s*$/.test(lines[i])) continue
    const end = lines.findIndex((l, j) => j > i && /^```\s*$/.test(l))
    const before = lines.slice(Math.max(0, i - 2), i).join('\n')
    blocks.push({ line: i + 1, code: lines.slice(i + 1, end).join('\n'), run: /<!--\s*run\b/.test(before) })
    i = end
  }
  return blocks
}

/** Node 24 when installed (it parses `await using`), else this Node. */
const checker = existsSync(node24) ? node24 : process.execPath

describe("the README's JavaScript", () => {
  const blocks = jsBlocks('README.md')
  const dir = mkdtempSync(path.join(os.tmpdir(), 'readme-blocks-'))

  it('has blocks, one of them runnable', () => {
    expect(blocks.length).toBeGreaterThan(3)
    expect(blocks.filter((b) => b.run).length).toBeGreaterThanOrEqual(1)
  })

  it.each(blocks.map((b) => [b.line, b]))('the block at line %i parses', (line, { code }) => {
    if (!existsSync(node24) && /\busing\b/.test(code)) return // `await using` needs Node 24's parser
    // As the body of an async function: snippets use await, and return from a handler.
    const file = path.join(dir, `block-${line}.mjs`)
    writeFileSync(file, `async function readmeBlock() {\n${code}\n}\n`)
    const checked = spawnSync(checker, ['--check', file], { encoding: 'utf8' })
    expect(checked.stderr, `README.md line ${line}`).toBe('')
    expect(checked.status).toBe(0)
  })

  it.each(blocks.filter((b) => b.run).map((b) => [b.line, b]))('the block at line %i runs against the server under test', async (line, { code }) => {
    const { mongoUrl } = await import('../support/suite.mjs')
    const { MongoClient } = await import('mongodb')
    // Where the block writes: `client.db('…').collection('…')`, dropped after unless it was there before.
    const [, dbName, collName] = /\.db\('([^']+)'\)\.collection\('([^']+)'\)/.exec(code) ?? []
    const client = await MongoClient.connect(mongoUrl())
    try {
      const existed = dbName ? (await client.db(dbName).listCollections({ name: collName }).toArray()).length > 0 : true
      // `require` as the package's users have it: 'mongo-locks-native' resolves to this package (self-reference).
      const file = path.join(dir, `run-${line}.mjs`)
      writeFileSync(file, [
        "import { createRequire } from 'node:module'",
        `const require = createRequire(${JSON.stringify(path.join(root, 'package.json'))})`,
        code,
        '',
      ].join('\n'))
      const ran = spawnSync(/\busing\b/.test(code) ? checker : process.execPath, [file], {
        encoding: 'utf8',
        env: { ...process.env, MONGO_URL: mongoUrl() },
        timeout: 45_000,
      })
      expect(ran.error, `README.md line ${line}`).toBeUndefined()
      expect(ran.status, `README.md line ${line}: ${ran.stderr}`).toBe(0)
      if (!existed) await client.db(dbName).collection(collName).drop().catch(() => {})
    } finally {
      await client.close()
    }
  })

  afterAll(() => rmSync(dir, { recursive: true, force: true }))
})
