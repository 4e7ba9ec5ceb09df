'use strict'
// The Hapi plugin (`mongo-locks-native/hapi`): one LockManager per server,
// decorated as `server.locker` and `request.locker` the way backends wired
// `mongo-locks` by hand, logging through the server's logger, closed (its
// held locks freed) when the server stops; routes that opt in answer
// retried requests with the first response (`idempotency`, below).

const { name, version } = require('../package.json')
// The manager itself, not the package entry (../index.js, which re-exports
// this plugin): no circle. Required on first registration, as before, so
// that loading the plugin does not load the native addon.
const managerModule = () => require('./manager.js')
const { ScheduledJob, Election } = require('./primitives.js')
const { CONTENT_TYPE: METRICS_CONTENT_TYPE } = require('./metrics.js')
const { MAX_MS } = require('./rules.js')
const { isPlainObject } = require('./keys.js')
const { DEFAULT_MAX_RESULT_BYTES, MAX_RESULT_BYTES } = require('./once.js')

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

// ------------------------------------------------------------ idempotent routes
//
// A route with `options.plugins.locks.idempotency` runs its handler inside
// `server.locker.once()`, keyed by the request's Idempotency-Key header (as
// the IETF draft "The Idempotency-Key HTTP Header Field" describes it): a
// retry with the same key and the same request gets the first response
// again instead of running the handler twice, on whichever instance it
// lands. The handler itself is wrapped (not an onPreHandler/onPreResponse
// pair) so that the record is held for exactly as long as the handler runs:
// Hapi answers an aborted or timed-out request without waiting for its
// handler, and freeing the record then would let a retry run beside it.

/** The options of `plugins.locks.idempotency`, in the order messages list them. */
const IDEMPOTENCY_OPTIONS = ['required', 'key', 'ttlMs', 'waitMs', 'maxResponseBytes']
const KEY_HEADER = 'idempotency-key'
/** Set on a replayed response, as Stripe names it: clients and logs can tell a replay from a run. */
const REPLAYED_HEADER = 'idempotent-replayed'
/** The longest Idempotency-Key accepted (Stripe's bound too): a UUID is 36. */
const MAX_KEY_LENGTH = 255
/**
 * Headers not replayed: hop-by-hop ones (they describe one connection),
 * those Hapi or Node write for each response anyway (length, date), and
 * set-cookie, since a cookie such as a session must not come back to life
 * from a stored copy.
 */
const NOT_REPLAYED = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade',
  'proxy-authenticate', 'proxy-authorization', 'content-length', 'date', 'set-cookie', REPLAYED_HEADER,
])
/** 4xx statuses that mean "try again", which a replay must not answer forever: they are not stored. */
const TRY_AGAIN = new Set([408, 409, 425, 429])
const SETTINGS = Symbol('mongo-locks-native idempotency')

const routeName = (route) => `route ${route.method.toUpperCase()} ${route.path}`

function wholeNumber(value, min, max) {
  return typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max
}

/** A route's checked `plugins.locks.idempotency`, or null when it does not opt in. */
function readIdempotency(route) {
  const plugins = route.settings.plugins
  const locks = plugins ? plugins.locks : undefined
  if (locks === undefined) return null
  const where = `${routeName(route)}: options.plugins.locks`
  if (!isPlainObject(locks)) fail(`${where} must be an object such as { idempotency: true }; got ${describe(locks)}`)
  const unknown = Object.keys(locks).filter((k) => k !== 'idempotency')
  if (unknown.length) fail(`${where} has unknown option ${unknown.map((k) => JSON.stringify(k)).join(', ')}; expected idempotency`)
  const value = locks.idempotency
  if (value === undefined || value === false) return null
  if (value !== true && !isPlainObject(value)) {
    fail(`${where}.idempotency must be true, false or an object with some of ${IDEMPOTENCY_OPTIONS.join(', ')}; got ${describe(value)}`)
  }
  const o = value === true ? {} : value
  const misspelt = Object.keys(o).filter((k) => !IDEMPOTENCY_OPTIONS.includes(k))
  if (misspelt.length) {
    fail(`${where}.idempotency has unknown option ${misspelt.map((k) => JSON.stringify(k)).join(', ')}; expected some of ${IDEMPOTENCY_OPTIONS.join(', ')}`)
  }
  const { required = true, key, ttlMs, waitMs, maxResponseBytes = DEFAULT_MAX_RESULT_BYTES } = o
  if (typeof required !== 'boolean') fail(`${where}.idempotency.required must be true or false; got ${describe(required)}`)
  if (key !== undefined && typeof key !== 'function') {
    fail(`${where}.idempotency.key must be a function (request) => string giving the idempotency key; got ${describe(key)}`)
  }
  if (ttlMs !== undefined && !wholeNumber(ttlMs, 1, MAX_MS)) {
    fail(`${where}.idempotency.ttlMs must be a whole number of milliseconds from 1 to ${MAX_MS} (how long a response is kept for retries); got ${describe(ttlMs)}`)
  }
  if (waitMs !== undefined && !wholeNumber(waitMs, 0, MAX_MS)) {
    fail(`${where}.idempotency.waitMs must be a whole number of milliseconds from 0 to ${MAX_MS} (how long a retry waits for the first request); got ${describe(waitMs)}`)
  }
  if (!wholeNumber(maxResponseBytes, 1, MAX_RESULT_BYTES)) {
    fail(`${where}.idempotency.maxResponseBytes must be a whole number of bytes from 1 to ${MAX_RESULT_BYTES}; got ${describe(maxResponseBytes)}`)
  }
  // The request body is part of the fingerprint: a stream cannot be read
  // twice, and a file's temporary path differs on every retry.
  const output = route.settings.payload ? route.settings.payload.output : undefined
  if (output === 'stream' || output === 'file') {
    fail(`${routeName(route)}: idempotency needs the request body to tell a retry from a different request, so it cannot be used with payload.output ${JSON.stringify(output)}; use 'data'`)
  }
  const once = { maxResultBytes: maxResponseBytes }
  if (ttlMs !== undefined) once.ttlMs = ttlMs
  if (waitMs !== undefined) once.waitMs = waitMs
  return { required, key, once }
}

/**
 * The Idempotency-Key header's value: a Structured Field string
 * (`"8e03…"`, as the draft writes it) or the bare value most clients send,
 * both giving the same key. `undefined` when absent or empty.
 */
function headerKey(request) {
  const raw = request.headers[KEY_HEADER]
  if (typeof raw !== 'string') return undefined
  let value = raw.trim()
  if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1).replace(/\\(["\\])/g, '$1')
  return value === '' ? undefined : value
}

/** `value` as JSON text with every object's fields sorted: one text per body, whatever order a client wrote it in. */
function sortedJson(value) {
  const sort = (v) => {
    if (Array.isArray(v)) return v.map(sort)
    if (isPlainObject(v)) return Object.fromEntries(Object.keys(v).sort().map((k) => [k, sort(v[k])]))
    return v
  }
  return JSON.stringify(sort(value)) ?? null
}

/**
 * What a retry must repeat to be "the same request": method, path (with its
 * parameters), query and body. The body as bytes or sorted JSON text, so
 * that field names with dots, which MongoDB refuses, are no problem.
 */
function requestFingerprint(request) {
  const body = request.payload
  let stored = null
  if (Buffer.isBuffer(body)) stored = body
  else if (typeof body === 'string') stored = Buffer.from(body)
  else if (body !== undefined && body !== null) stored = sortedJson(body)
  return { method: request.method, path: request.path, query: request.url ? request.url.search : '', body: stored }
}

/** A Hapi response object (what `h.response()` makes), told apart from a handler's plain value. */
function isResponseObject(value) {
  return typeof value === 'object' && value !== null && typeof value.takeover === 'function' &&
    typeof value.code === 'function' && 'variety' in value && 'source' in value
}

function headerPairs(headers) {
  return Object.entries(headers)
    .filter(([name, value]) => !NOT_REPLAYED.has(name.toLowerCase()) && value !== undefined && value !== null)
    .map(([name, value]) => [name, Array.isArray(value) ? value.join(', ') : String(value)])
}

/**
 * What is stored of a handler's response (`{ statusCode, headers,
 * contentType, body }`), or `{ skip: why }` when it must not be: a 5xx, a
 * "try again" 4xx, a body that is not plain data. Headers as pairs (a
 * header name may hold a dot); JSON bodies as their text, parsed back on
 * replay so that the route's JSON settings and response validation apply
 * to a replay as they did to the first response.
 */
function storedResponse(response) {
  const statusCode = response.statusCode ?? 200
  if (statusCode >= 500) return { skip: `its status is ${statusCode}` }
  if (TRY_AGAIN.has(statusCode)) return { skip: `its status ${statusCode} tells the client to try again` }
  const headers = headerPairs(response.headers)
  const contentType = response.contentType ?? null
  let body = null
  if (response.variety === 'buffer') body = { bytes: response.source }
  else if (response.variety !== 'plain') return { skip: `its body is a ${response.variety}` }
  else if (typeof response.source === 'string') body = { text: response.source }
  else if (response.source !== null) {
    const format = response.settings.stringify || {}
    let json
    try {
      json = JSON.stringify(response.source, format.replacer)
    } catch (err) {
      return { skip: `its body cannot be written as JSON (${err.message})` }
    }
    body = { json }
    if (format.space !== undefined) body.space = format.space
    if (format.suffix !== undefined) body.suffix = format.suffix
  }
  return { stored: { statusCode, headers, contentType, body } }
}

/** A thrown Boom error's response as stored (its output), or `{ skip }`. */
function storedError(err) {
  if (!err || !err.isBoom || !err.output) return { skip: 'the handler failed' }
  const { statusCode, headers, payload } = err.output
  if (statusCode >= 500) return { skip: `its status is ${statusCode}` }
  if (TRY_AGAIN.has(statusCode)) return { skip: `its status ${statusCode} tells the client to try again` }
  return { stored: { statusCode, headers: headerPairs(headers || {}), contentType: 'application/json; charset=utf-8', body: { json: JSON.stringify(payload) } } }
}

/** The stored response, made again, marked as a replay. */
function replayed(h, stored) {
  const { body } = stored
  let source = null
  if (body && body.json !== undefined) source = JSON.parse(body.json)
  else if (body && body.text !== undefined) source = body.text
  else if (body && body.bytes !== undefined) source = body.bytes
  const response = h.response(source).code(stored.statusCode)
  if (body && body.space !== undefined) response.spaces(body.space)
  if (body && body.suffix !== undefined) response.suffix(body.suffix)
  for (const [name, value] of stored.headers) response.header(name, value)
  if (stored.contentType) response.type(stored.contentType)
  return response.header(REPLAYED_HEADER, 'true')
}

/** An error response in Hapi's own shape (what Boom errors look like), so clients parse one format. */
function problem(h, statusCode, error, message) {
  return h.response({ statusCode, error, message }).code(statusCode)
}

/** One log line of a request, through hapi-pino's request.logger when there is one, else request.log. */
function requestLog(request, level, fields, message) {
  const target = request.logger
  if (typeof target === 'object' && target !== null && LEVELS.some((l) => typeof target[l] === 'function')) {
    if (typeof target[level] === 'function') target[level](fields, message)
    return
  }
  request.log([name, 'idempotency', level], { message, ...fields })
}

/** Why a handler's response was not stored, thrown out of the once() run so that its record is freed. */
class NotStored extends Error {}

/** `handler` run at most once per idempotency key while its record lives; retries get its response. */
function idempotentHandler(handler, settings) {
  return async function (request, h) {
    const bind = this
    let key
    if (settings.key) {
      key = await settings.key(request)
      if (key === null || key === '') key = undefined
      if (key !== undefined && typeof key !== 'string') {
        throw new TypeError(`${name}: ${routeName(request.route)}: plugins.locks.idempotency.key(request) must return a string (or undefined when the request has none); got ${describe(key)}`)
      }
    } else {
      key = headerKey(request)
      if (key !== undefined && key.length > MAX_KEY_LENGTH) {
        requestLog(request, 'info', { idempotencyKeyLength: key.length }, 'idempotency key too long')
        return problem(h, 400, 'Bad Request', `The Idempotency-Key header must be at most ${MAX_KEY_LENGTH} characters; this one has ${key.length}`)
      }
    }
    if (key === undefined) {
      if (!settings.required) return handler.call(bind, request, h)
      requestLog(request, 'info', {}, 'idempotency key missing')
      const message = settings.key
        ? 'This request needs an idempotency key, and none was found in it'
        : 'This request needs an Idempotency-Key header: a unique value (such as a UUID) for each operation, sent again unchanged with every retry of it'
      return problem(h, 400, 'Bad Request', message)
    }
    const recordKey = `${request.method.toUpperCase()} ${request.route.path} ${key}`
    const fields = { idempotencyKey: key }
    const locker = request.server.locker
    let own = null
    let stored
    try {
      stored = await locker.once(recordKey, async ({ signal, fencingToken }) => {
        // The handler can pass the token on to its writes, and stop when the record is lost.
        request.plugins.locks = { idempotency: { key, signal, fencingToken } }
        own = {}
        try {
          own.value = await handler.call(bind, request, h)
        } catch (err) {
          own.error = err
        }
        let outcome
        if (own.error !== undefined) outcome = storedError(own.error)
        else if (own.value === undefined || typeof own.value === 'symbol') outcome = { skip: 'the handler gave no response' }
        else if (own.value instanceof Error) outcome = storedError(own.value)
        else {
          // A plain value made into the response Hapi would make of it, to read what it sends.
          if (!isResponseObject(own.value)) own.value = h.response(own.value)
          outcome = storedResponse(own.value)
        }
        if (outcome.skip) throw new NotStored(outcome.skip)
        return outcome.stored
      }, { ...settings.once, payload: requestFingerprint(request) })
    } catch (err) {
      if (own === null) {
        if (err && err.code === 'ONCE_IN_PROGRESS') {
          requestLog(request, 'debug', fields, 'idempotent request still in progress')
          return problem(h, 409, 'Conflict', 'A request with this Idempotency-Key is still being processed; retry it later')
        }
        if (err && err.code === 'ONCE_PAYLOAD_MISMATCH') {
          requestLog(request, 'info', fields, 'idempotency key reused for a different request')
          return problem(h, 422, 'Unprocessable Entity', 'This Idempotency-Key was already used for a different request (method, path, query or body); use a new key for a new operation')
        }
        throw err
      }
      // The handler ran: its own response goes out, whether or not it was kept.
      if (err instanceof NotStored) requestLog(request, 'debug', fields, `response not stored for retries: ${err.message}`)
      else if (err instanceof RangeError) requestLog(request, 'warn', { ...fields, maxResponseBytes: settings.once.maxResultBytes }, `response not stored for retries: ${err.message}`)
      else if (err && err.name === 'LockLostError') requestLog(request, 'warn', fields, 'response not stored for retries: the idempotency record was taken over while the handler ran (the process was paused or cut off from MongoDB)')
      else requestLog(request, 'error', { ...fields, err: { message: err && err.message } }, 'response not stored for retries')
      if (own.error !== undefined) throw own.error
      return own.value
    }
    if (own !== null) return own.value
    requestLog(request, 'debug', { ...fields, statusCode: stored.statusCode }, 'idempotent request replayed')
    return replayed(h, stored)
  }
}

/** Wraps the handler of `route` if it opts in (once: a route is seen at most twice, listed and announced). */
function applyIdempotency(route, routes) {
  const settings = readIdempotency(route)
  if (!settings || route.settings[SETTINGS]) return
  route.settings[SETTINGS] = settings
  route.settings.handler = idempotentHandler(route.settings.handler, settings)
  routes.push(route)
}

/**
 * Registered by the main plugin, or on its own over a `server.locker` made
 * another way (a LockManager decorated by hand, or createTestLocker() in an
 * application's tests). Registered once per server whichever way.
 */
const idempotency = {
  name: `${name}/idempotency`,
  version,
  once: true,
  register(server) {
    const routes = []
    // Routes added before this plugin, then each one added after.
    for (const route of server.table()) applyIdempotency(route, routes)
    server.events.on('route', (route) => applyIdempotency(route, routes))
    // A route that opts in needs a locker with once(): said at start, not at the first request.
    server.ext('onPreStart', () => {
      if (!routes.length) return
      const locker = server.locker
      if (!locker || typeof locker.once !== 'function') {
        throw new TypeError(`${name}: ${routes.map(routeName).join(', ')} use${routes.length === 1 ? 's' : ''} plugins.locks.idempotency, which needs server.locker with once(); got ${locker ? 'a server.locker without once()' : 'no server.locker'}. Register the mongo-locks-native/hapi plugin, or decorate server.locker with a LockManager`)
      }
    })
  },
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
    // Routes with options.plugins.locks.idempotency run through locker.once().
    await server.register(idempotency)
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

module.exports = { plugin, idempotency }
