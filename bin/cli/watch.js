'use strict'
// `watch`: the list, redrawn every --interval seconds on the terminal's
// alternate screen (or printed again and again when stdout is not one);
// q, Ctrl-C or Ctrl-D quits and gives the terminal back as it was.

const { EXIT_OK, serverError } = require('./errors')
const { readLocks, requireCollection } = require('./read')
const { listLines, duration, plural } = require('./format')

const CSI = '\x1b['
const ENTER_SCREEN = `${CSI}?1049h${CSI}?25l` // alternate screen, cursor hidden
const LEAVE_SCREEN = `${CSI}?25h${CSI}?1049l` // cursor shown, main screen back
const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP']

/** Cuts `line` to `width` characters. */
const fit = (line, width) => (width > 0 && line.length > width ? `${line.slice(0, Math.max(0, width - 1))}…` : line)

const clockText = (ms) => new Date(ms).toISOString().slice(11, 19)

async function watch(request, to, conn, out) {
  const tty = Boolean(out.isTTY)
  const input = process.stdin
  let stop
  const stopped = new Promise((resolve) => { stop = resolve })
  let finished = false
  stopped.then(() => { finished = true })

  // The first read before touching the terminal: a server that is not there,
  // or a wrong --db or --collection, is one line on stderr, as for list.
  let last = await readLocks(conn, request.timeoutMs)
  if (last.locks.length === 0 && last.records.length === 0) await requireCollection(conn, to, request.timeoutMs)
  let lastAt = Date.now()
  let problem = null

  let restored = !tty
  const restore = () => {
    if (restored) return
    restored = true
    if (input.isTTY && input.isRaw) input.setRawMode(false)
    out.write(LEAVE_SCREEN)
  }
  const onKey = (data) => {
    // q, Q, Ctrl-C, Ctrl-D (the terminal is raw: Ctrl-C is a byte, not SIGINT).
    if (/[qQ\x03\x04]/.test(String(data))) stop()
  }
  const onSignal = () => stop()
  process.on('exit', restore)
  for (const sig of SIGNALS) process.on(sig, onSignal)
  if (input.isTTY) {
    input.setRawMode(true)
    input.on('data', onKey)
    input.resume()
  }
  const draw = () => {
    const expired = last.locks.filter((l) => l.expired).length
    const header = [
      `${to.database}.${to.collection} on ${to.hosts}`,
      `${last.locks.length} lock${last.locks.length === 1 ? '' : 's'}${expired ? ` (${expired} expired)` : ''}` +
        // once() records are not locks: counted, listed by the records command.
        `${last.records.length ? `, ${plural(last.records.length, 'once() record')}` : ''}  ` +
        `${last.clock} time ${clockText(last.now)}Z  every ${request.intervalMs / 1000}s${tty ? '  q: quit' : ''}`,
    ]
    const status = problem ? `! ${problem} (last read ${duration(Date.now() - lastAt)} ago, retrying)` : ''
    const body = last.locks.length === 0 ? ['No locks.'] : listLines(last.locks)
    let lines = [...header, status, ...body]
    if (!tty) {
      out.write(`${lines.join('\n')}\n\n`)
      return
    }
    const rows = out.rows || 24
    const columns = out.columns || 80
    if (lines.length > rows) {
      const hidden = lines.length - (rows - 1)
      lines = [...lines.slice(0, rows - 1), `… ${hidden} more (a taller terminal, or list, shows them)`]
    }
    out.write(`${CSI}H${lines.map((l) => `${fit(l, columns)}${CSI}K`).join('\r\n')}${CSI}J`)
  }
  const onResize = () => draw()

  try {
    if (tty) {
      out.write(ENTER_SCREEN)
      out.on('resize', onResize)
    }
    draw()
    while (!finished) {
      let timer
      await Promise.race([stopped, new Promise((resolve) => { timer = setTimeout(resolve, request.intervalMs) })])
      clearTimeout(timer)
      if (finished) break
      try {
        last = await Promise.race([readLocks(conn, request.timeoutMs), stopped.then(() => last)])
        if (finished) break
        lastAt = Date.now()
        problem = null
      } catch (e) {
        problem = serverError(`the server at ${to.hosts}`, e).message
      }
      draw()
    }
  } finally {
    out.off('resize', onResize)
    for (const sig of SIGNALS) process.off(sig, onSignal)
    if (input.isTTY) {
      input.off('data', onKey)
      input.pause()
    }
    restore()
    process.off('exit', restore)
  }
  return EXIT_OK
}

module.exports = { watch }
