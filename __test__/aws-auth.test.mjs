// authMechanism=MONGODB-AWS, as some of our users' services connect: the
// manager carries the mechanism from the app's client (URL or options) and
// finds credentials the way the Node driver does: in the environment first,
// then at the ECS task role endpoint. FerretDB has no MONGODB-AWS, so the
// server's side of the login is played by scripts/aws-auth-standin.mjs, in
// front of a real FerretDB: it verifies the AWS Signature V4 of the signed
// sts:GetCallerIdentity request against the credentials the test issued, as
// STS would, and passes every other command to FerretDB. The ECS endpoint is
// a local HTTP server; no traffic leaves the machine (AWS_EC2_METADATA_DISABLED,
// a HOME without AWS profiles).
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import http from 'node:http'
import { mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { startFerretDB } from '../scripts/ferretdb.mjs'
import { startAwsAuthStandIn } from '../scripts/aws-auth-standin.mjs'
import { root, runNode } from './support.mjs'

const fixture = path.join(root, '__test__', 'fixtures', 'aws-as-app.mjs')
const AWS_VARS = Object.keys(process.env).filter((k) => k.startsWith('AWS_'))
const TASK = { accessKeyId: 'ASIATASKROLE00000001', secretAccessKey: 'task-role-secret/abc+def', sessionToken: 'task-session-token' }
const USER = { accessKeyId: 'AKIAENVIRONMENT00001', secretAccessKey: 'environment-secret' }

describe('MONGODB-AWS: credentials found the way the Node driver finds them', () => {
  let ferret
  let standIn
  let ecs
  let requests
  let home
  beforeAll(async () => {
    ferret = await startFerretDB()
    standIn = await startAwsAuthStandIn({ upstreamPort: ferret.port, credentials: [TASK, USER] })
    requests = []
    ecs = http.createServer((req, res) => {
      requests.push({ url: req.url, authorization: req.headers.authorization })
      res.setHeader('content-type', 'application/json')
      res.end(JSON.stringify({
        AccessKeyId: TASK.accessKeyId,
        SecretAccessKey: TASK.secretAccessKey,
        Token: TASK.sessionToken,
        Expiration: new Date(Date.now() + 3600_000).toISOString(),
      }))
    })
    await new Promise((resolve) => ecs.listen(0, '127.0.0.1', resolve))
    home = mkdtempSync(path.join(os.tmpdir(), 'mln-aws-home-'))
  })
  afterAll(async () => {
    await standIn?.stop()
    await ferret?.stop()
    ecs?.close()
    rmSync(home, { recursive: true, force: true })
  })

  /** Runs the app with only these AWS variables (no profile files, no EC2 metadata). */
  const asApp = async (where, aws) => {
    requests.length = 0
    standIn.logins.length = 0
    const unset = Object.fromEntries(AWS_VARS.map((k) => [k, '']))
    const env = { ...unset, HOME: home, AWS_EC2_METADATA_DISABLED: 'true', AWS_REGION: 'eu-west-2', ...aws }
    const run = await runNode(fixture, [standIn.url, `aws-${Date.now()}`, where], { env, timeoutMs: 60_000 })
    expect(run.code, run.stderr).toBe(0)
    return JSON.parse(run.stdout.trim().split('\n').pop())
  }
  const ecsUri = () => `http://127.0.0.1:${ecs.address().port}/v2/credentials/task-role`

  it('the ECS task role (mechanism in the URL): credentials from the task endpoint, with its token; locks, refuses a held key, frees', async () => {
    const out = await asApp('url', { AWS_CONTAINER_CREDENTIALS_FULL_URI: ecsUri(), AWS_CONTAINER_AUTHORIZATION_TOKEN: 'task-token' })
    expect(out.error).toBeUndefined()
    expect(out).toMatchObject({ locked: true, refused: true, freed: true, lockedAfterFree: true })
    expect(out.settings).toMatchObject({ authMechanism: 'MONGODB-AWS' })
    expect(requests[0]).toEqual({ url: '/v2/credentials/task-role', authorization: 'task-token' })
    expect(standIn.logins.length).toBeGreaterThan(0)
    expect(standIn.logins.every((l) => l.ok && l.accessKeyId === TASK.accessKeyId)).toBe(true)
  })

  it('credentials in the environment come first (the endpoint is not asked); mechanism in the client options', async () => {
    const out = await asApp('options', {
      AWS_ACCESS_KEY_ID: USER.accessKeyId,
      AWS_SECRET_ACCESS_KEY: USER.secretAccessKey,
      AWS_CONTAINER_CREDENTIALS_FULL_URI: ecsUri(),
    })
    expect(out).toMatchObject({ locked: true, refused: true, freed: true, lockedAfterFree: true })
    expect(requests).toEqual([])
    expect(standIn.logins.every((l) => l.ok && l.accessKeyId === USER.accessKeyId)).toBe(true)
    expect(JSON.stringify(out)).not.toContain(USER.secretAccessKey)
  })

  it('a wrong secret: the refusal comes back at once as a MongoLocksError that says authentication failed', async () => {
    const out = await asApp('url', { AWS_ACCESS_KEY_ID: USER.accessKeyId, AWS_SECRET_ACCESS_KEY: 'not-the-secret' })
    expect(standIn.logins[0]).toMatchObject({ ok: false, why: 'signature does not match' })
    expect(out.error.isMongoLocksError).toBe(true)
    expect(out.error.message).toMatch(/authentication failed/i)
    expect(out.settings).toMatchObject({ authMechanism: 'MONGODB-AWS' }) // what it tried, while it cannot connect
    expect(out.ms).toBeLessThan(10_000)
  })

  it('no credentials anywhere: a clear error, not a hang', async () => {
    const out = await asApp('url', {})
    expect(standIn.logins).toEqual([]) // nothing was signed
    expect(out.error.isMongoLocksError).toBe(true)
    expect(out.error.message).toMatch(/creds|credential/i)
    expect(out.ms).toBeLessThan(15_000)
  })
})
