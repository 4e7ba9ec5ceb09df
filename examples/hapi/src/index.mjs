import { createServer } from './server.mjs'

const server = await createServer()
await server.start()
server.logger.info({ uri: server.info.uri }, 'server started')

// Stopping closes the locker: the locks this instance holds are freed at
// once instead of blocking other instances until they expire.
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, async () => {
    await server.stop({ timeout: 10_000 })
    process.exit(0)
  })
}
