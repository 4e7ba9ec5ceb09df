// Stand-in for hapi-pino, which backends made from the Defra CDP Node.js
// backend template register first: it
// decorates server.logger and request.logger with a pino logger. Same shape
// here (pino's `logger.info(fields, message)` or `logger.info(message)`),
// printing JSON lines, so the example needs no extra dependency.
const LEVELS = ['debug', 'info', 'warn', 'error']

/** A pino-like logger writing levels from `level` up ('silent' for none). */
export function jsonLogger(level = process.env.LOG_LEVEL ?? 'info') {
  const min = LEVELS.indexOf(level)
  const write = (name, rank) => (fields, message) => {
    if (min < 0 || rank < min) return
    if (typeof fields === 'string') [fields, message] = [{}, fields]
    console.log(JSON.stringify({ level: name, time: Date.now(), ...fields, msg: message }))
  }
  return Object.fromEntries(LEVELS.map((name, rank) => [name, write(name, rank)]))
}

export const logging = {
  name: 'logging',
  register(server, { logger = jsonLogger() } = {}) {
    server.decorate('server', 'logger', logger)
    server.decorate('request', 'logger', () => logger, { apply: true })
  },
}
