'use strict'
// Where and how the application's Node client connects, read from its parsed
// options (mongodb driver 4 to 7, or a Mongoose connection's client), for the
// Rust core to lay over the connection string (src/connection.rs). Checked
// here, at construction: what cannot be carried is a TypeError that names the
// option and says how to pass the same thing.

const fs = require('node:fs')
const tls = require('node:tls')

// The Node driver's defaults: a pool setting equal to these was most likely
// not chosen by the application, and our own (smaller) pool bounds apply.
const DRIVER_DEFAULTS = { maxPoolSize: 100, minPoolSize: 0, maxIdleTimeMS: 0, connectTimeoutMS: 30_000 }

const fail = (message) => {
  throw new TypeError(`mongo-locks-native: ${message}`)
}

/**
 * The Node driver Collection behind `collection` as the Rust core reads it
 * (`collectionName`, `dbName`, `client.s.url`): a driver Collection as is; a
 * Mongoose collection (`mongoose.connection.collection(name)`, a model's
 * `collection`) through its connection's client.
 */
function driverShape(collection) {
  const conn = collection && typeof collection === 'object' ? collection.conn : undefined
  if (conn && typeof conn.getClient === 'function' && typeof collection.collectionName === 'string') {
    const client = conn.getClient()
    const dbName = conn.name || (conn.db && conn.db.databaseName)
    if (client && dbName) return { collectionName: collection.collectionName, dbName, client }
  }
  return collection
}

/** The MongoClient of a driver-shaped collection (driver 5+: `client`; driver 4: `s.db.s.client`). */
function clientOf(collection) {
  if (!collection || typeof collection !== 'object') return undefined
  const client = collection.client || (collection.s && collection.s.db && collection.s.db.s && collection.s.db.s.client)
  return client && typeof client === 'object' ? client : undefined
}

/** PEM text of a `ca`/`cert`/`key` option value: a string, a Buffer, or an array of them. */
function pemText(value, name) {
  const parts = Array.isArray(value) ? value : [value]
  return parts
    .map((part) => {
      if (typeof part === 'string') return part
      if (Buffer.isBuffer(part) || part instanceof Uint8Array) return Buffer.from(part).toString('utf8')
      return fail(`${name} must be PEM text, a Buffer or an array of them, got ${typeof part}`)
    })
    .join('\n')
}

const count = (pem) => (pem.match(/-----BEGIN CERTIFICATE-----/g) || []).length

/** The CAs of the `TRUSTSTORE_*` variables (base64 PEM), as @defra/hapi-secure-context adds them to every secure context. */
function trustStore(env = process.env) {
  return Object.keys(env)
    .filter((k) => k.startsWith('TRUSTSTORE_') && env[k])
    .sort()
    .map((k) => Buffer.from(env[k], 'base64').toString('utf8').trim())
    .filter((pem) => pem.includes('-----BEGIN CERTIFICATE-----'))
}

/** Node's default CA set: bundled roots, NODE_EXTRA_CA_CERTS, and the system store where Node uses it. */
function nodeDefaultCAs() {
  if (typeof tls.getCACertificates === 'function') {
    return { pem: tls.getCACertificates('default').join('\n'), source: "Node's default CAs" }
  }
  const parts = [...tls.rootCertificates]
  let source = "Node's bundled CAs"
  const extra = process.env.NODE_EXTRA_CA_CERTS
  if (extra) {
    try {
      parts.push(fs.readFileSync(extra, 'utf8'))
      source += ' + NODE_EXTRA_CA_CERTS'
    } catch {
      // Node itself only warns about an unreadable file; so do we (by not adding it).
    }
  }
  return { pem: parts.join('\n'), source }
}

/**
 * The CAs to trust and where they come from: the manager's `tls.ca`, else the
 * client's `ca` or `tlsCAFile`, else Node's default set; plus the TRUSTSTORE_*
 * certificates in every case.
 *
 * A client `secureContext` (what @defra/hapi-secure-context decorates the
 * server with, and older copies of the Defra CDP Node.js backend template
 * pass to MongoClient)
 * cannot be read: Node has no way to list a context's CAs. What such a
 * context trusts in practice is derived from where the platform's CAs come
 * from: Node's default set (with NODE_EXTRA_CA_CERTS), TRUSTSTORE_*, and
 * what the Hapi plugin or the application adds as `tls.extraCa`. If that
 * is not enough, connecting says to pass the CA as `tls: { ca }`.
 */
function trustedCAs(options, managerTls) {
  let base
  if (managerTls && managerTls.ca !== undefined) {
    base = { pem: pemText(managerTls.ca, 'options.tls.ca'), source: 'options.tls.ca' }
  } else if (options.tlsCAFile) {
    // (Once connected, the Node driver also holds this file's text as `ca`.)
    base = { pem: fs.readFileSync(options.tlsCAFile, 'utf8'), source: `tlsCAFile ${options.tlsCAFile}` }
  } else if (options.ca !== undefined) {
    base = { pem: pemText(options.ca, "the client's ca option"), source: "the client's ca option" }
  } else {
    base = nodeDefaultCAs()
    if (options.secureContext) base.source = `derived for the client's secureContext, whose CAs cannot be read: ${base.source}`
  }
  const store = trustStore()
  const extra = managerTls && managerTls.extraCa !== undefined ? pemText(managerTls.extraCa, 'options.tls.extraCa') : ''
  const pem = [base.pem, ...store, extra].join('\n')
  const source = `${base.source} (${count(base.pem)})${store.length ? ` + TRUSTSTORE_* (${store.length})` : ''}${extra ? ` + options.tls.extraCa (${count(extra)})` : ''}`
  return { pem, source }
}

/**
 * `options.tls` of the manager, checked: `ca` (trust these instead of what the
 * client trusts), `extraCa` (trust these as well), `cert`, `key`, `passphrase`.
 */
function checkManagerTls(value) {
  if (value === undefined) return undefined
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    fail(`options.tls must be an object { ca, extraCa, cert, key, passphrase }, got ${value === null ? 'null' : typeof value}`)
  }
  for (const name of Object.keys(value)) {
    if (!['ca', 'extraCa', 'cert', 'key', 'passphrase'].includes(name)) fail(`unknown option tls.${name}; expected ca, extraCa, cert, key, passphrase`)
  }
  if (value.passphrase !== undefined && typeof value.passphrase !== 'string') fail('options.tls.passphrase must be a string')
  return value
}

const AUTH_REFUSED = {
  'MONGODB-OIDC': 'MONGODB-OIDC (its callbacks run in JavaScript, and this build has no OIDC)',
  GSSAPI: 'GSSAPI (Kerberos is not in this build)',
}

/** The credentials of the client's parsed options, checked. */
function credentials(creds) {
  if (!creds) return {}
  const mechanism = creds.mechanism && creds.mechanism !== 'DEFAULT' ? creds.mechanism : undefined
  if (mechanism && AUTH_REFUSED[mechanism]) {
    fail(`the client's authMechanism ${AUTH_REFUSED[mechanism]} cannot be used by the lock manager; give it a user that authenticates with SCRAM or X.509, in options.uri`)
  }
  const properties = {}
  for (const [name, value] of Object.entries(creds.mechanismProperties || {})) {
    // The lookup of aws-credentials.js calls it (see awsProviderOf).
    if (name === 'AWS_CREDENTIAL_PROVIDER' && typeof value === 'function') continue
    if (typeof value === 'function') {
      fail(
        `the client's authMechanismProperties.${name} is a function, which the Rust client cannot call; ` +
          'pass what it gives in options.uri',
      )
    }
    if (value !== undefined && value !== null) properties[name] = String(value)
  }
  return {
    username: creds.username || undefined,
    password: creds.password || undefined,
    authSource: creds.source || undefined,
    authMechanism: mechanism,
    authMechanismProperties: Object.keys(properties).length ? properties : undefined,
  }
}

const ms = (value, driverDefault) =>
  typeof value === 'number' && Number.isFinite(value) && value >= 0 && value !== driverDefault ? Math.min(value, 2 ** 31 - 1) : undefined

/**
 * The settings of `client` (a MongoClient) to carry, with `managerTls` (the
 * manager's `options.tls`); `undefined` when there is nothing to read (the
 * Rust core then uses the connection string alone).
 */
function settingsOf(client, managerTls) {
  const o = client && client.options
  if (!o || typeof o !== 'object') {
    // Only the URL to go by: TLS is on if it says so, with these CAs.
    return managerTls ? tlsSettings({}, managerTls) : undefined
  }
  if (o.proxyHost) fail("the client's proxyHost option (a SOCKS5 proxy) cannot be used by the lock manager")
  // The driver turns tlsAllowInvalidHostnames into checkServerIdentity: () => undefined.
  const hostnameCheckChanged = o.tlsAllowInvalidHostnames || typeof o.checkServerIdentity === 'function'
  if (o.tls && hostnameCheckChanged && !o.tlsAllowInvalidCertificates && !o.tlsInsecure) {
    fail(
      "the client's tlsAllowInvalidHostnames (or checkServerIdentity) cannot be carried on its own: this build's TLS " +
        'has no hostname-only switch; use a certificate that names the host, or tlsAllowInvalidCertificates (which skips every check)',
    )
  }
  const settings = {
    hosts: o.srvHost ? undefined : (o.hosts || []).map((h) => String(h)),
    replicaSet: o.replicaSet || undefined,
    directConnection: typeof o.directConnection === 'boolean' ? o.directConnection : undefined,
    loadBalanced: typeof o.loadBalanced === 'boolean' ? o.loadBalanced : undefined,
    ...credentials(o.credentials),
    tls: Boolean(o.tls),
    retryWrites: typeof o.retryWrites === 'boolean' ? o.retryWrites : undefined,
    retryReads: typeof o.retryReads === 'boolean' ? o.retryReads : undefined,
    compressors: Array.isArray(o.compressors) ? o.compressors.filter((c) => c !== 'none') : undefined,
    appName: o.appName || undefined,
    serverApiVersion: o.serverApi ? String(o.serverApi.version ?? o.serverApi) : undefined,
    serverApiStrict: o.serverApi && typeof o.serverApi.strict === 'boolean' ? o.serverApi.strict : undefined,
    serverApiDeprecationErrors: o.serverApi && typeof o.serverApi.deprecationErrors === 'boolean' ? o.serverApi.deprecationErrors : undefined,
    maxPoolSize: ms(o.maxPoolSize, DRIVER_DEFAULTS.maxPoolSize),
    minPoolSize: ms(o.minPoolSize, DRIVER_DEFAULTS.minPoolSize),
    maxIdleTimeMs: ms(o.maxIdleTimeMS, DRIVER_DEFAULTS.maxIdleTimeMS),
    connectTimeoutMs: ms(o.connectTimeoutMS, DRIVER_DEFAULTS.connectTimeoutMS),
    serverSelectionTimeoutMs: ms(o.serverSelectionTimeoutMS),
    heartbeatFrequencyMs: ms(o.heartbeatFrequencyMS),
    localThresholdMs: ms(o.localThresholdMS),
  }
  if (settings.tls) Object.assign(settings, tlsSettings(o, managerTls))
  return settings
}

/** The TLS part: CAs, client certificate and key, the allow-invalid switch. */
function tlsSettings(o, managerTls) {
  const { pem, source } = trustedCAs(o, managerTls)
  const out = { caPem: pem, caSource: source }
  const certSource = managerTls && managerTls.cert !== undefined ? managerTls : o
  if (certSource.cert !== undefined && certSource.key !== undefined) {
    out.certKeyPem = `${pemText(certSource.cert, 'cert')}\n${pemText(certSource.key, 'key')}`
  } else if (o.tlsCertificateKeyFile) {
    out.certKeyPem = fs.readFileSync(o.tlsCertificateKeyFile, 'utf8')
  }
  const passphrase = (managerTls && managerTls.passphrase) ?? o.passphrase ?? o.tlsCertificateKeyFilePassword
  if (passphrase !== undefined) out.certKeyPassword = String(passphrase)
  if (o.tlsAllowInvalidCertificates || o.tlsInsecure) out.tlsAllowInvalidCertificates = true
  // Its CAs were derived (above) unless given another way, and a client
  // certificate inside it is out of sight: connecting's errors say so.
  if (o.secureContext) out.secureContext = true
  return out
}

/** The client's `AWS_CREDENTIAL_PROVIDER` (a function), if it has one. */
function awsProviderOf(client) {
  const provider = client && client.options && client.options.credentials && client.options.credentials.mechanismProperties &&
    client.options.credentials.mechanismProperties.AWS_CREDENTIAL_PROVIDER
  return typeof provider === 'function' ? provider : undefined
}

/** Whether a manager connects with MONGODB-AWS: its client's settings say so, or its URL does. */
function usesAws(settings, uri) {
  return (settings && settings.authMechanism === 'MONGODB-AWS') || (typeof uri === 'string' && /[?&]authMechanism=MONGODB-AWS(&|$)/i.test(uri))
}

module.exports = { driverShape, clientOf, settingsOf, checkManagerTls, trustStore, awsProviderOf, usesAws }
