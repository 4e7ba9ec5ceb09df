'use strict'
// MONGODB-AWS credentials, found the way the application's Node driver finds
// them. The Rust core signs the login; at each login it calls the lookup
// made here (src/aws.rs). In order:
//
// 1. the client's `authMechanismProperties.AWS_CREDENTIAL_PROVIDER`, when the
//    application gave its driver one;
// 2. the AWS SDK's chain (`fromNodeProviderChain`), when
//    `@aws-sdk/credential-providers` is installed, as the driver does (driver 7
//    requires it for MONGODB-AWS);
// 3. otherwise what the driver looks at without the SDK, and web identity:
//    the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
//    AWS_SESSION_TOKEN), web identity (AWS_WEB_IDENTITY_TOKEN_FILE with
//    AWS_ROLE_ARN, through STS), the ECS task role
//    (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI or _FULL_URI), EC2 instance
//    metadata (IMDSv2; off with AWS_EC2_METADATA_DISABLED=true).
//
// A key in the URL or the client options is used as is, by Rust, and never
// reaches here. Credentials with an expiry are kept until five minutes
// before it; the managers of one client share them, as do those made by
// `connect()` (one lookup per process), so logins do not each ask.

const fs = require('node:fs')

/** Credentials are looked up again this long before they expire. */
const RENEW_BEFORE_MS = 5 * 60_000
/** Each request to an endpoint (ECS, instance metadata, STS) gives up after this. */
const REQUEST_TIMEOUT_MS = 5_000
const IMDS_TIMEOUT_MS = 1_000

/**
 * The lookup for one manager: an async function resolving to
 * `{ accessKeyId, secretAccessKey, sessionToken, expirationMs }`, or
 * rejecting with what was tried.
 * @param {Function} [custom] the client's AWS_CREDENTIAL_PROVIDER
 */
function awsCredentialLookup(custom) {
  let kept = null
  let pending = null
  const find = async () => {
    const chain = custom ? null : sdkChain()
    const found = await (custom ? fromCustom(custom) : chain ? fromSdk(chain) : fromDefaultChain())
    if (found.expirationMs !== undefined) kept = found
    return found
  }
  return function awsCredentials() {
    if (kept && kept.expirationMs - Date.now() > RENEW_BEFORE_MS) return Promise.resolve(kept)
    // Logins that start together wait on one lookup.
    pending ??= find().finally(() => { pending = null })
    return pending
  }
}

/** `{ accessKeyId, secretAccessKey, sessionToken?, expiration? }` from a provider, checked. */
function checked(value, where) {
  if (!value || typeof value.accessKeyId !== 'string' || !value.accessKeyId || typeof value.secretAccessKey !== 'string' || !value.secretAccessKey) {
    throw new Error(`${where} gave no accessKeyId and secretAccessKey`)
  }
  const expiration = value.expiration
  const expirationMs = expiration === undefined || expiration === null ? undefined : new Date(expiration).getTime()
  return {
    accessKeyId: value.accessKeyId,
    secretAccessKey: value.secretAccessKey,
    sessionToken: value.sessionToken || undefined,
    expirationMs: Number.isFinite(expirationMs) ? expirationMs : undefined,
  }
}

async function fromCustom(custom) {
  let value
  try {
    value = await custom()
  } catch (err) {
    throw new Error(`the client's AWS_CREDENTIAL_PROVIDER failed: ${err && err.message ? err.message : err}`)
  }
  return checked(value, "the client's AWS_CREDENTIAL_PROVIDER")
}

let sdk
/** The SDK's `fromNodeProviderChain()` provider, made once; `null` when the package is not installed. */
function sdkChain() {
  if (sdk === undefined) {
    try {
      sdk = require('@aws-sdk/credential-providers').fromNodeProviderChain()
    } catch {
      sdk = null
    }
  }
  return sdk
}

async function fromSdk(provider) {
  let value
  try {
    value = await provider()
  } catch (err) {
    throw new Error(`the AWS SDK's credential chain (@aws-sdk/credential-providers) found none: ${err && err.message ? err.message : err}`)
  }
  return checked(value, "the AWS SDK's credential chain")
}

/** The environment, web identity, the ECS task role, EC2 instance metadata: the first one set up. */
async function fromDefaultChain(env = process.env) {
  if (env.AWS_ACCESS_KEY_ID && env.AWS_SECRET_ACCESS_KEY) {
    return { accessKeyId: env.AWS_ACCESS_KEY_ID, secretAccessKey: env.AWS_SECRET_ACCESS_KEY, sessionToken: env.AWS_SESSION_TOKEN || undefined, expirationMs: undefined }
  }
  if (env.AWS_WEB_IDENTITY_TOKEN_FILE && env.AWS_ROLE_ARN) return fromWebIdentity(env)
  if (env.AWS_CONTAINER_CREDENTIALS_RELATIVE_URI || env.AWS_CONTAINER_CREDENTIALS_FULL_URI) return fromContainer(env)
  if (String(env.AWS_EC2_METADATA_DISABLED).toLowerCase() !== 'true') {
    try {
      return await fromInstanceMetadata(env)
    } catch (err) {
      throw new Error(`none found: no AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, no AWS_WEB_IDENTITY_TOKEN_FILE with AWS_ROLE_ARN, no AWS_CONTAINER_CREDENTIALS_RELATIVE_URI or _FULL_URI, and EC2 instance metadata did not answer (${err.message})`)
    }
  }
  throw new Error('none found: no AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, no AWS_WEB_IDENTITY_TOKEN_FILE with AWS_ROLE_ARN, no AWS_CONTAINER_CREDENTIALS_RELATIVE_URI or _FULL_URI, and AWS_EC2_METADATA_DISABLED is set')
}

/** An HTTP request with a timeout; the body as text, or an error naming `what`. */
async function request(what, url, init = {}, timeoutMs = REQUEST_TIMEOUT_MS) {
  let response
  try {
    response = await fetch(url, { ...init, signal: AbortSignal.timeout(timeoutMs) })
  } catch (err) {
    const why = err && err.name === 'TimeoutError' ? `no answer within ${timeoutMs} ms` : (err.cause && err.cause.message) || err.message
    throw new Error(`${what} at ${url} could not be reached: ${why}`)
  }
  const text = await response.text()
  if (!response.ok) throw new Error(`${what} at ${url} answered ${response.status}: ${text.slice(0, 200)}`)
  return text
}

function json(what, text) {
  try {
    return JSON.parse(text)
  } catch {
    throw new Error(`${what} answered something that is not JSON`)
  }
}

/** Hosts an ECS full URI may name over plain HTTP, as the AWS SDKs allow. */
const CONTAINER_HOSTS = new Set(['169.254.170.2', '169.254.170.23', '[fd00:ec2::23]', 'localhost', '[::1]'])

async function fromContainer(env) {
  const what = 'the ECS task role endpoint'
  let url = env.AWS_CONTAINER_CREDENTIALS_RELATIVE_URI
    ? `http://169.254.170.2${env.AWS_CONTAINER_CREDENTIALS_RELATIVE_URI}`
    : env.AWS_CONTAINER_CREDENTIALS_FULL_URI
  let parsed
  try {
    parsed = new URL(url)
  } catch {
    throw new Error(`AWS_CONTAINER_CREDENTIALS_FULL_URI is not a URL: ${JSON.stringify(url)}`)
  }
  if (parsed.protocol === 'http:' && !CONTAINER_HOSTS.has(parsed.hostname) && !parsed.hostname.startsWith('127.')) {
    throw new Error(`AWS_CONTAINER_CREDENTIALS_FULL_URI over http must name a loopback or ECS/EKS address, got ${parsed.hostname}; use https`)
  }
  const headers = {}
  const token = env.AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE
    ? fs.readFileSync(env.AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE, 'utf8').trim()
    : env.AWS_CONTAINER_AUTHORIZATION_TOKEN
  if (token) headers.authorization = token
  const body = json(what, await request(what, url, { headers }))
  return checked({ accessKeyId: body.AccessKeyId, secretAccessKey: body.SecretAccessKey, sessionToken: body.Token, expiration: body.Expiration }, what)
}

async function fromInstanceMetadata(env) {
  const what = 'EC2 instance metadata'
  const base = (env.AWS_EC2_METADATA_SERVICE_ENDPOINT || 'http://169.254.169.254').replace(/\/+$/, '')
  const token = await request(what, `${base}/latest/api/token`, { method: 'PUT', headers: { 'x-aws-ec2-metadata-token-ttl-seconds': '21600' } }, IMDS_TIMEOUT_MS)
  const headers = { 'x-aws-ec2-metadata-token': token }
  const roles = await request(what, `${base}/latest/meta-data/iam/security-credentials/`, { headers }, IMDS_TIMEOUT_MS)
  const role = roles.split('\n')[0].trim()
  if (!role) throw new Error(`${what} lists no instance role`)
  const body = json(what, await request(what, `${base}/latest/meta-data/iam/security-credentials/${encodeURIComponent(role)}`, { headers }, IMDS_TIMEOUT_MS))
  return checked({ accessKeyId: body.AccessKeyId, secretAccessKey: body.SecretAccessKey, sessionToken: body.Token, expiration: body.Expiration }, what)
}

/** AssumeRoleWithWebIdentity: the request is not signed, the token file is the proof. */
async function fromWebIdentity(env) {
  const what = 'STS AssumeRoleWithWebIdentity'
  const region = env.AWS_REGION || env.AWS_DEFAULT_REGION
  const endpoint = env.AWS_ENDPOINT_URL_STS || env.AWS_ENDPOINT_URL || (region ? `https://sts.${region}.amazonaws.com` : 'https://sts.amazonaws.com')
  let token
  try {
    token = fs.readFileSync(env.AWS_WEB_IDENTITY_TOKEN_FILE, 'utf8').trim()
  } catch (err) {
    throw new Error(`AWS_WEB_IDENTITY_TOKEN_FILE could not be read: ${err.message}`)
  }
  const form = new URLSearchParams({
    Action: 'AssumeRoleWithWebIdentity',
    Version: '2011-06-15',
    RoleArn: env.AWS_ROLE_ARN,
    RoleSessionName: env.AWS_ROLE_SESSION_NAME || `mongo-locks-native-${Date.now()}`,
    WebIdentityToken: token,
  })
  const xml = await request(what, endpoint, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: form.toString() })
  const entities = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" }
  const field = (name) => xml.match(new RegExp(`<${name}>([^<]*)</${name}>`))?.[1].replace(/&(amp|lt|gt|quot|apos);/g, (_, e) => entities[e])
  return checked({ accessKeyId: field('AccessKeyId'), secretAccessKey: field('SecretAccessKey'), sessionToken: field('SessionToken'), expiration: field('Expiration') }, what)
}

const perClient = new WeakMap()
let processWide

/**
 * The lookup of the managers of `client` (an application's MongoClient), or
 * of those without one, made on first use.
 * @param {object} [client]
 * @param {Function} [custom] the client's AWS_CREDENTIAL_PROVIDER
 */
function awsCredentialsFor(client, custom) {
  if (!client || typeof client !== 'object') return (processWide ??= awsCredentialLookup())
  let lookup = perClient.get(client)
  if (!lookup) perClient.set(client, (lookup = awsCredentialLookup(custom)))
  return lookup
}

module.exports = { awsCredentialsFor }
