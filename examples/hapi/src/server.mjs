import Hapi from '@hapi/hapi'
import { plugin as mongoLocks } from 'mongo-locks-native/hapi'
import { logging } from './common/helpers/logging.mjs'
import { routes } from './routes/index.mjs'
import { reconcilePayments } from './jobs/reconcile-payments.mjs'

/**
 * The server, not started. Settings default to the environment (MONGO_URL,
 * MONGO_DATABASE, PORT); tests pass their own.
 */
export async function createServer({
  mongoUrl = process.env.MONGO_URL,
  databaseName = process.env.MONGO_DATABASE ?? 'example',
  locksCollection = 'mongo-locks',
  port = Number(process.env.PORT ?? 3000),
  reconcileEveryMs = Number(process.env.RECONCILE_EVERY_MS ?? 3_600_000),
  onReconcile,
  logger,
} = {}) {
  const server = Hapi.server({ port })
  // Logging first, so the locker's own logs (takeovers, lost locks) reach it.
  await server.register({ plugin: logging, options: { logger } })
  // Decorates server.locker and request.locker; server.stop() frees held
  // locks. The job starts with the server on every instance; one runs it.
  await server.register({
    plugin: mongoLocks,
    options: {
      mongoUrl,
      databaseName,
      collection: locksCollection,
      jobs: { 'reconcile-payments': reconcilePayments({ everyMs: reconcileEveryMs, onRun: onReconcile }) },
    },
  })
  server.route(routes)
  return server
}
