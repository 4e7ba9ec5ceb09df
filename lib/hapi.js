'use strict'
// The Hapi plugin (`mongo-locks-native/hapi`): one LockManager per server,
// decorated as `server.locker` and `request.locker` the way backends wired
// `mongo-locks` by hand, logging through the server's logger, closed (its
// held locks freed) when the server stops.

const { name, version } = require('../package.json')
// The manager itself, not the package entry (../index.js, which re-exports
// this plugin): no circle. Required on first registration, as before, so
// that loading the plugin does not load the native addon.
const managerModule = () => require('./manager.js')
const { ScheduledJob, Election } = require('./primitives.js')
const { CONTENT_TYPE: METRICS_CONTENT_TYPE } = require('./metrics.js')

/** Plugin options passed straight to the LockManager (it checks their values). */
const LOCKER_OPTIONS = ['ttlMs', 'refreshMs', 'serverSelectionTimeoutMs', 'operationTimeoutMs', 'writeConcern']
const KNOWN_OPTIONS = ['mongoUrl', 'databaseName', 'collection', 'metricsPath', 'jobs', 'election', ...LOCKER_OPTIONS]
const LEVELS = ['debug', 'info', 'warn', 'error']

function describe(value) {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'an array'
  if (typeof value === 'string') return `the string ${JSON.stringify(value)}`
  if (typeof value === 'object') return `an object with keys [${Object.keys(value).join(', ')}]`
  return `${typeof value} ${String(value)}`
}

function fail(message) {
  throw new TypeError(`${name}: ${message}`)
}

function isNonEmptyString(value) {
  return typeof value === 'string' && value !== ''
}

/** Duck-typed like the LockManager constructor does: what a driver Collection has. */
function isDriverCollection(value) {
  return typeof value === 'object' && value !== null &&
    isNonEmptyString(value.collectionName) && isNonEmptyString(value.dbName)
}

/**
 * Checks the plugin options and says how to build the locker:
 * `{ collection }` (a driver Collection) or `{ mongoUrl, databaseName, collectionName }`,
 * each with `lockerOptions`.
 */
function readOptions(options) {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    fail(`plugin options must be an object with mongoUrl and databaseName, or with a driver collection; got ${describe(options)}`)
  }
  const unknown = Object.keys(options).filter((key) => !KNOWN_OPTIONS.includes(key))
  if (unknown.length) {
    fail(`unknown plugin option ${unknown.map((k) => JSON.stringify(k)).join(', ')}; expected some of ${KNOWN_OPTIONS.join(', ')}`)
  }
  const { mongoUrl, databaseName, collection, metricsPath } = options
  if (metricsPath !== undefined && !(typeof metricsPath === 'string' && metricsPath.startsWith('/'))) {
    fail(`options.metricsPath must be a route path starting with "/" (e.g. "/metrics"); got ${describe(metricsPath)}`)
  }
  const jobs = readJobs(options.jobs)
  const election = readElection(options.election)
  const lockerOptions = {}
  for (const key of LOCKER_OPTIONS) if (options[key] !== undefined) lockerOptions[key] = options[key]

  if (mongoUrl === undefined) {
    if (collection === undefined) {
      fail('plugin options need either mongoUrl (with databaseName) or collection (a MongoDB driver Collection, from db.collection(name)); got neither')
    }
    if (!isDriverCollection(collection)) {
      const hint = typeof collection === 'string' ? ' (a collection name needs mongoUrl and databaseName too)' : ''
      fail(`options.collection must be a MongoDB driver Collection (from db.collection(name))${hint}; got ${describe(collection)}`)
    }
    if (databaseName !== undefined) {
      fail(`options.databaseName is only used with mongoUrl; the collection ${JSON.stringify(collection.collectionName)} already belongs to database ${JSON.stringify(collection.dbName)}`)
    }
    return { collection, lockerOptions, metricsPath, jobs, election }
  }

  if (!isNonEmptyString(mongoUrl)) {
    fail(`options.mongoUrl must be a non-empty MongoDB connection string; got ${describe(mongoUrl)}`)
  }
  if (isDriverCollection(collection)) {
    fail(`pass either mongoUrl or a driver collection, not both; got mongoUrl and the collection ${JSON.stringify(collection.collectionName)}`)
  }
  if (!isNonEmptyString(databaseName)) {
    fail(`options.databaseName must be a non-empty string (the database holding the locks) when mongoUrl is given; got ${describe(databaseName)}`)
  }
  if (collection !== undefined && !isNonEmptyString(collection)) {
    fail(`options.collection must be a non-empty collection name when mongoUrl is given (default 'mongo-locks'); got ${describe(collection)}`)
  }
  return { mongoUrl, databaseName, collectionName: collection, lockerOptions, metricsPath, jobs, election }
}

/** `options.jobs`: `{ [name]: { everyMs, minHoldMs?, run(signal) } }`, checked (ScheduledJob checks the numbers). */
function readJobs(jobs) {
  if (jobs === undefined) return []
  if (typeof jobs !== 'object' || jobs === null || Array.isArray(jobs)) {
    fail(`options.jobs must be an object { [name]: { everyMs, minHoldMs, run } }; got ${describe(jobs)}`)
  }
  return Object.entries(jobs).map(([name, job]) => {
    if (typeof job !== 'object' || job === null || typeof job.run !== 'function') {
      fail(`options.jobs[${JSON.stringify(name)}] must be { everyMs, run(signal) } with run a function; got ${describe(job)}`)
    }
    const { run, ...schedule } = job
    return { name, schedule, run }
  })
}

/** `options.election`: `{ key, onElected, onDemoted, onError }`, checked. */
function readElection(election) {
  if (election === undefined) return undefined
  if (typeof election !== 'object' || election === null || Array.isArray(election) || election.key === undefined) {
    fail(`options.election must be { key, onElected(signal), onDemoted(reason) }; got ${describe(election)}`)
  }
  const { key, ...callbacks } = election
  for (const [name, value] of Object.entries(callbacks)) {
    if (!['onElected', 'onDemoted', 'onError'].includes(name)) fail(`unknown option election.${name}; expected key, onElected, onDemoted, onError`)
    if (typeof value !== 'function') fail(`options.election.${name} must be a function; got ${describe(value)}`)
  }
  return { key, callbacks }
}

/**
 * The `logger` handed to the LockManager, which calls `logger[level](fields, message)`.
 * It looks for `server.logger` at each call rather than at registration, so it
 * does not matter whether hapi-pino is registered before or after this plugin.
 */
function serverLogger(server) {
  const log = (level) => (fields, message) => {
    const target = server.logger
    if (typeof target === 'object' && target !== null && LEVELS.some((l) => typeof target[l] === 'function')) {
      // A pino-style logger (hapi-pino's): one without this level does not want it.
      if (typeof target[level] === 'function') target[level](fields, message)
      return
    }
    server.log([name, level], { message, ...fields })
  }
  return Object.fromEntries(LEVELS.map((level) => [level, log(level)]))
}

async function register(server, options) {
  const settings = readOptions(options)
  const { LockManager } = managerModule()
  const logger = serverLogger(server)
  // The CAs @defra/hapi-secure-context added to every secure context (it
  // decorates the server with them), trusted by the manager's client too.
  const custom = server.customCACerts
  const extraCa = custom && typeof custom === 'object' ? Object.values(custom).filter((c) => typeof c === 'string') : []
  const tls = extraCa.length ? { tls: { extraCa } } : {}
  const locker = settings.collection
    ? new LockManager(settings.collection, { ...settings.lockerOptions, ...tls, logger })
    // connect() waits for the server: a backend should not start without its locks.
    : await LockManager.connect(settings.mongoUrl, {
      database: settings.databaseName,
      collection: settings.collectionName,
      ...settings.lockerOptions,
      ...tls,
      logger,
    })

  try {
    // Made (and checked) before anything is decorated; started with the server.
    // A failed job or campaign step, logged under its kind and name.
    const logFailure = (kind, name) => (err) => logger.error({ [kind]: name, err: { message: err && err.message } }, `${kind} ${name} failed`)
    const jobs = Object.fromEntries(settings.jobs.map(({ name: jobName, schedule, run }) =>
      [jobName, new ScheduledJob(locker, jobName, { onError: logFailure('job', jobName), ...schedule }, run)]))
    const election = settings.election ? new Election(locker, settings.election.key, {
      onError: logFailure('election', String(settings.election.key)),
      ...settings.election.callbacks,
    }) : null
    server.decorate('server', 'locker', locker)
    server.decorate('request', 'locker', () => locker, { apply: true })
    // Jobs run while the server runs: started on every instance, done by
    // one of them per interval (see ScheduledJob), stopped before the locker
    // closes. server.jobs has them by name.
    server.decorate('server', 'jobs', jobs)
    if (settings.jobs.length) {
      server.ext('onPostStart', () => Object.values(jobs).forEach((job) => job.start()))
      server.ext('onPreStop', () => Promise.all(Object.values(jobs).map((job) => job.stop())))
    }
    // The election campaigns from server start to server stop.
    server.decorate('server', 'election', election)
    if (election) {
      server.ext('onPostStart', () => { election.start() })
      server.ext('onPreStop', () => election.stop())
    }
    // onPostStop is awaited by server.stop(); the 'stop' event is not.
    server.ext('onPostStop', () => locker.close())
    if (settings.metricsPath) {
      server.route({
        method: 'GET',
        path: settings.metricsPath,
        handler: (request, h) => h.response(locker.metrics()).type(METRICS_CONTENT_TYPE),
      })
    }
  } catch (err) {
    // e.g. `locker` already decorated by a hand-written MongoDB plugin.
    await locker.close()
    throw err
  }
}

const plugin = { name, version, register }

module.exports = { plugin }
