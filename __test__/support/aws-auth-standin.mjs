// A stand-in for what a MongoDB server does with authMechanism=MONGODB-AWS,
// in front of a real FerretDB (which has no MONGODB-AWS). A MongoDB server
// answers saslStart with a nonce and an STS host, receives a signed
// sts:GetCallerIdentity request in saslContinue, and has STS check it. Here
// the check is local: the stand-in knows the credentials the test issued
// (through the environment or a local ECS endpoint) and verifies the
// request's AWS Signature Version 4 itself, the way STS would. Everything
// else on the connection goes to FerretDB untouched, so locks are real.
//
// What this proves: the manager found the credentials where the task gives
// them and signed the request correctly with them. What it does not: AWS's
// own STS (not reachable from here).
//
//   const standIn = await startAwsAuthStandIn({ upstreamPort, credentials: [{ accessKeyId, secretAccessKey, sessionToken }] })
//   standIn.url, standIn.logins (one entry per accepted or refused login), await standIn.stop()
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import net from 'node:net'
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
const { BSON, Binary } = require('bson')

const OP_MSG = 2013
const STS_HOST = 'sts.amazonaws.com'
const STS_BODY = 'Action=GetCallerIdentity&Version=2011-06-15'

const sha256 = (data) => createHash('sha256').update(data).digest('hex')
const hmac = (key, data) => createHmac('sha256', key).update(data).digest()

/**
 * Checks the `a` (Authorization header), `d` (x-amz-date) and `t` (session
 * token) of a client's second MONGODB-AWS message against `known`
 * credentials; returns `{ ok, accessKeyId, why }`.
 */
export function verifySigV4({ a, d, t }, serverNonce, known) {
  const m = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/sts\/aws4_request, SignedHeaders=([^,]+), Signature=([0-9a-f]{64})$/.exec(a || '')
  if (!m) return { ok: false, why: `malformed Authorization header ${JSON.stringify(a)}` }
  const [, accessKeyId, day, region, signedHeaders, signature] = m
  const creds = known.find((c) => c.accessKeyId === accessKeyId)
  if (!creds) return { ok: false, accessKeyId, why: 'unknown access key' }
  if ((creds.sessionToken || undefined) !== (t || undefined)) return { ok: false, accessKeyId, why: 'wrong session token' }
  if (!d || !d.startsWith(day)) return { ok: false, accessKeyId, why: 'date and credential scope differ' }
  const values = {
    'content-length': String(STS_BODY.length),
    'content-type': 'application/x-www-form-urlencoded',
    host: STS_HOST,
    'x-amz-date': d,
    'x-amz-security-token': t,
    'x-mongodb-gs2-cb-flag': 'n',
    'x-mongodb-server-nonce': serverNonce.toString('base64'),
  }
  const names = signedHeaders.split(';')
  for (const required of ['host', 'x-amz-date', 'x-mongodb-server-nonce', 'x-mongodb-gs2-cb-flag']) {
    if (!names.includes(required)) return { ok: false, accessKeyId, why: `${required} is not signed` }
  }
  if (names.some((n) => values[n] === undefined)) return { ok: false, accessKeyId, why: `unexpected signed header in ${signedHeaders}` }
  const canonical = ['POST', '/', '', ...names.map((n) => `${n}:${values[n]}`), '', signedHeaders, sha256(STS_BODY)].join('\n')
  const scope = `${day}/${region}/sts/aws4_request`
  const toSign = ['AWS4-HMAC-SHA256', d, scope, sha256(canonical)].join('\n')
  const key = ['aws4_request'].reduce(hmac, hmac(hmac(hmac(`AWS4${creds.secretAccessKey}`, day), region), 'sts'))
  const expected = hmac(key, toSign)
  const ok = timingSafeEqual(expected, Buffer.from(signature, 'hex'))
  return { ok, accessKeyId, why: ok ? undefined : 'signature does not match' }
}

/** An OP_MSG reply to request `responseTo` carrying `doc`. */
function reply(responseTo, doc) {
  const body = BSON.serialize(doc)
  const header = Buffer.alloc(21)
  header.writeInt32LE(21 + body.length, 0)
  header.writeInt32LE(Math.floor(Math.random() * 2 ** 31), 4)
  header.writeInt32LE(responseTo, 8)
  header.writeInt32LE(OP_MSG, 12)
  header.writeUInt32LE(0, 16) // flagBits
  header.writeUInt8(0, 20) // section kind 0: the body
  return Buffer.concat([header, body])
}

/** The body document of an OP_MSG (section kind 0), or null. */
function opMsgBody(message) {
  if (message.readInt32LE(12) !== OP_MSG) return null
  let at = 20
  while (at < message.length) {
    const kind = message.readUInt8(at)
    if (kind === 0) return BSON.deserialize(message.subarray(at + 1, at + 1 + message.readInt32LE(at + 1)), { promoteBuffers: true })
    at += 1 + message.readInt32LE(at + 1) // kind 1: a document sequence
  }
  return null
}

export async function startAwsAuthStandIn({ upstreamPort, credentials }) {
  const logins = []
  const sockets = new Set()
  const server = net.createServer((client) => {
    const upstream = net.connect(upstreamPort, '127.0.0.1')
    sockets.add(client).add(upstream)
    const close = () => { client.destroy(); upstream.destroy() }
    client.on('error', close).on('close', close)
    upstream.on('error', close).on('close', close)
    upstream.pipe(client)
    let pending = Buffer.alloc(0)
    let serverNonce = null
    client.on('data', (chunk) => {
      pending = Buffer.concat([pending, chunk])
      while (pending.length >= 4 && pending.length >= pending.readInt32LE(0)) {
        const message = pending.subarray(0, pending.readInt32LE(0))
        pending = pending.subarray(message.length)
        const body = opMsgBody(message)
        const requestId = message.readInt32LE(4)
        if (body && body.saslStart === 1 && body.mechanism === 'MONGODB-AWS') {
          const first = BSON.deserialize(body.payload, { promoteBuffers: true })
          serverNonce = Buffer.concat([first.r, randomBytes(32)])
          const payload = BSON.serialize({ s: new Binary(serverNonce), h: STS_HOST })
          client.write(reply(requestId, { conversationId: 1, done: false, payload: new Binary(payload), ok: 1 }))
        } else if (body && body.saslContinue === 1 && serverNonce) {
          const second = BSON.deserialize(body.payload, { promoteBuffers: true })
          const verdict = verifySigV4(second, serverNonce, credentials)
          logins.push(verdict)
          serverNonce = null
          client.write(verdict.ok
            ? reply(requestId, { conversationId: 1, done: true, payload: new Binary(Buffer.alloc(0)), ok: 1 })
            : reply(requestId, { ok: 0, errmsg: `Authentication failed (stand-in STS: ${verdict.why})`, code: 18, codeName: 'AuthenticationFailed' }))
        } else {
          upstream.write(message)
        }
      }
    })
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = server.address().port
  return {
    port,
    url: `mongodb://127.0.0.1:${port}/?directConnection=true`,
    logins,
    async stop() {
      for (const s of sockets) s.destroy()
      await new Promise((resolve) => server.close(resolve))
    },
  }
}
