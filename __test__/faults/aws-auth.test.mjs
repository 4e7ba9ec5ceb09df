// authMechanism=MONGODB-AWS, as some of our users' services connect: the
// manager carries the mechanism from the app's client (URL or options) and
// finds credentials the way the Node driver does: in the environment first,
// then web identity, the ECS task role endpoint, EC2 instance metadata; or
// the client's own AWS_CREDENTIAL_PROVIDER. FerretDB has no MONGODB-AWS, so the
// server's side of the login is played by __test__/support/aws-auth-standin.mjs, in
// front of a real FerretDB: it verifies the AWS Signature V4 of the signed
// sts:GetCallerIdentity request against the credentials the test issued, as
// STS would, and passes every other command to FerretDB. The ECS endpoint,
// STS's AssumeRoleWithWebIdentity and the instance metadata service are local
// HTTP servers (AWS_ENDPOINT_URL_STS, AWS_EC2_METADATA_SERVICE_ENDPOINT); no
// traffic leaves the machine (AWS_EC2_METADATA_DISABLED unless the test is
// about it, a HOME without AWS profiles).
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import http from 'node:http'
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { startFerretDB } from '../support/ferretdb.mjs'
import { startAwsAuthStandIn } from '../support/aws-auth-standin.mjs'
import { root, runNode } from '../support/suite.mjs'

const fixture = path.join(root, '__test__', 'fixtures', 'aws-as-app.mjs')
const AWS_VARS = Object.keys(process.env).filter((k) => k.startsWith('AWS_'))
const TASK = { accessKeyId: 'ASIATASKROLE00000001', secretAccessKey: 'task-role-secret/abc+def', sessionToken: 'task-session-token' }
const USER = { accessKeyId: 'AKIAENVIRONMENT00001', secretAccessKey: 'environment-secret' }
const ROLE = { accessKeyId: 'ASIAWEBIDENTITY00001', secretAccessKey: 'web-identity-secret&more', sessionToken: 'web-identity-session' }
const INSTANCE = { accessKeyId: 'ASIAINSTANCEROLE0001', secretAccessKey: 'instance-role-secret', sessionToken: 'instance-session' }
const PROVIDED = { accessKeyId: 'AKIAAPPPROVIDER00001', secretAccessKey: 'app-provider-secret', sessionToken: 'app-provider-session' }
const ROLE_ARN = 'arn:aws:iam::123456789012:role/bank-details'
const xmlEscape = (s) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;')
const listen = async (handler) => {
  const server = http.createServer(handler)
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  return server
}
const bodyOf = (req) => new Promise((resolve) => {
  let body = ''
  req.on('data', (c) => { body += c })
  req.on('end', () => resolve(body))
})

describe('MONGODB-AWS: credentials found the way the Node driver finds them', () => {
  let ferret
  let standIn
  let ecs
  let sts
  let imds
  let requests
  let home
  const inAnHour = () => new Date(Date.now() + 3600_000).toISOString()
  beforeAll(async () => {
    ferret = await startFerretDB()
    standIn = await startAwsAuthStandIn({ upstreamPort: ferret.port, credentials: [TASK, USER, ROLE, INSTANCE, PROVIDED] })
    requests = []
    ecs = await listen((req, res) => {
      requests.push({ to: 'ecs', url: req.url, authorization: req.headers.authorization })
      res.setHeader('content-type', 'application/json')
      res.end(JSON.stringify({ AccessKeyId: TASK.accessKeyId, SecretAccessKey: TASK.secretAccessKey, Token: TASK.sessionToken, Expiration: inAnHour() }))
    })
    // STS's AssumeRoleWithWebIdentity, as AWS answers it (XML).
    sts = await listen(async (req, res) => {
      const form = Object.fromEntries(new URLSearchParams(await bodyOf(req)))
      requests.push({ to: 'sts', method: req.method, form })
      res.setHeader('content-type', 'text/xml')
      res.end(`<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleWithWebIdentityResult>
<Credentials><AccessKeyId>${ROLE.accessKeyId}</AccessKeyId><SecretAccessKey>${xmlEscape(ROLE.secretAccessKey)}</SecretAccessKey>
<SessionToken>${ROLE.sessionToken}</SessionToken><Expiration>${inAnHour()}</Expiration></Credentials>
</AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>`)
    })
    // IMDSv2: a token first, then the role's credentials with that token.
    imds = await listen((req, res) => {
      requests.push({ to: 'imds', method: req.method, url: req.url, token: req.headers['x-aws-ec2-metadata-token'] })
      if (req.method === 'PUT' && req.url === '/latest/api/token') return res.end('imds-session-token')
      if (req.headers['x-aws-ec2-metadata-token'] !== 'imds-session-token') return res.writeHead(401).end()
      if (req.url === '/latest/meta-data/iam/security-credentials/') return res.end('bank-details-role\n')
      if (req.url === '/latest/meta-data/iam/security-credentials/bank-details-role') {
        return res.end(JSON.stringify({ Code: 'Success', AccessKeyId: INSTANCE.accessKeyId, SecretAccessKey: INSTANCE.secretAccessKey, Token: INSTANCE.sessionToken, Expiration: inAnHour() }))
      }
      res.writeHead(404).end()
    })
    home = mkdtempSync(path.join(os.tmpdir(), 'mln-aws-home-'))
  })
  afterAll(async () => {
    await standIn?.stop()
    await ferret?.stop()
    for (const server of [ecs, sts, imds]) server?.close()
    rmSync(home, { recursive: true, force: true })
  })

  /** Runs the app with only these AWS variables (no profile files, no EC2 metadata). */
  const asApp = async (where, aws) => {
    requests.length = 0
    standIn.logins.length = 0
    const unset = Object.fromEntries(AWS_VARS.map((k) => [k, '']))
    const env = { ...unset, HOME: home, AWS_EC2_METADATA_DISABLED: 'true', AWS_REGION: 'eu-west-2', APP_PROVIDED_CREDENTIALS: JSON.stringify(PROVIDED), ...aws }
    const run = await runNode(fixture, [standIn.url, `aws-${Date.now()}`, where], { env, timeoutMs: 60_000 })
    expect(run.code, run.stderr).toBe(0)
    return JSON.parse(run.stdout.trim().split('\n').pop())
  }
  const ecsUri = () => `http://127.0.0.1:${ecs.address().port}/v2/credentials/task-role`
  /** The app locked, was refused, freed and locked again, every login signed with `creds`. */
  const expectLockedWith = (out, creds) => {
    expect(out.error).toBeUndefined()
    expect(out).toMatchObject({ locked: true, refused: true, freed: true, lockedAfterFree: true })
    expect(standIn.logins.length).toBeGreaterThan(0)
    expect(standIn.logins.every((l) => l.ok && l.accessKeyId === creds.accessKeyId)).toBe(true)
  }

  it('the ECS task role (mechanism in the URL): credentials from the task endpoint, with its token; locks, refuses a held key, frees', async () => {
    const out = await asApp('url', { AWS_CONTAINER_CREDENTIALS_FULL_URI: ecsUri(), AWS_CONTAINER_AUTHORIZATION_TOKEN: 'task-token' })
    expect(out.error).toBeUndefined()
    expect(out).toMatchObject({ locked: true, refused: true, freed: true, lockedAfterFree: true })
    expect(out.settings).toMatchObject({ authMechanism: 'MONGODB-AWS' })
    // One lookup for the two managers of the client and all their logins.
    expect(requests).toEqual([{ to: 'ecs', url: '/v2/credentials/task-role', authorization: 'task-token' }])
    expect(standIn.logins.length).toBeGreaterThan(0)
    expect(standIn.logins.every((l) => l.ok && l.accessKeyId === TASK.accessKeyId)).toBe(true)
  })

  it('the ECS task role with its token in a file (AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE), managers of LockManager.connect()', async () => {
    const tokenFile = path.join(home, 'ecs-token')
    writeFileSync(tokenFile, 'token-from-file\n')
    const out = await asApp('connect', { AWS_CONTAINER_CREDENTIALS_FULL_URI: ecsUri(), AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: tokenFile })
    expectLockedWith(out, TASK)
    expect(requests).toEqual([{ to: 'ecs', url: '/v2/credentials/task-role', authorization: 'token-from-file' }])
  })

  // (Not with a key in the environment: driver 6 reads it into the client's
  // credentials, where it comes before any provider; driver 7 does not.)
  it("the client's AWS_CREDENTIAL_PROVIDER is asked instead of the task's endpoints, as the Node driver does", async () => {
    const out = await asApp('provider', { AWS_CONTAINER_CREDENTIALS_FULL_URI: ecsUri() })
    expectLockedWith(out, PROVIDED)
    expect(requests).toEqual([])
  })

  it('web identity (EKS service accounts): the token file is exchanged at STS for the role\'s credentials', async () => {
    const tokenFile = path.join(home, 'web-identity-token')
    writeFileSync(tokenFile, 'eyJhbGciOi.web-identity.jwt\n')
    const out = await asApp('url', {
      AWS_WEB_IDENTITY_TOKEN_FILE: tokenFile,
      AWS_ROLE_ARN: ROLE_ARN,
      AWS_ROLE_SESSION_NAME: 'payments-7f9c',
      AWS_ENDPOINT_URL_STS: `http://127.0.0.1:${sts.address().port}`,
      AWS_CONTAINER_CREDENTIALS_FULL_URI: ecsUri(), // after web identity: not asked
    })
    expect(out.error).toBeUndefined()
    expect(out).toMatchObject({ locked: true, refused: true, freed: true, lockedAfterFree: true })
    expect(requests).toEqual([{
      to: 'sts',
      method: 'POST',
      form: { Action: 'AssumeRoleWithWebIdentity', Version: '2011-06-15', RoleArn: ROLE_ARN, RoleSessionName: 'payments-7f9c', WebIdentityToken: 'eyJhbGciOi.web-identity.jwt' },
    }])
    expect(standIn.logins.length).toBeGreaterThan(0)
    expect(standIn.logins.every((l) => l.ok && l.accessKeyId === ROLE.accessKeyId)).toBe(true)
  })

  it('EC2 instance metadata (IMDSv2): a session token, the role, its credentials', async () => {
    const out = await asApp('options', { AWS_EC2_METADATA_DISABLED: '', AWS_EC2_METADATA_SERVICE_ENDPOINT: `http://127.0.0.1:${imds.address().port}` })
    expect(out.error).toBeUndefined()
    expect(out).toMatchObject({ locked: true, refused: true, freed: true, lockedAfterFree: true })
    expect(requests.map((r) => `${r.method} ${r.url} ${r.token ?? '-'}`)).toEqual([
      'PUT /latest/api/token -',
      'GET /latest/meta-data/iam/security-credentials/ imds-session-token',
      'GET /latest/meta-data/iam/security-credentials/bank-details-role imds-session-token',
    ])
    expect(standIn.logins.every((l) => l.ok && l.accessKeyId === INSTANCE.accessKeyId)).toBe(true)
  })

  it('an ECS endpoint that fails: the error names it and what it answered', async () => {
    const out = await asApp('url', { AWS_CONTAINER_CREDENTIALS_FULL_URI: `http://127.0.0.1:${imds.address().port}/nothing-here` })
    expect(standIn.logins).toEqual([])
    expect(out.error.isMongoLocksError).toBe(true)
    expect(out.error.message).toMatch(/no AWS credentials: the ECS task role endpoint at http:\/\/127\.0\.0\.1:\d+\/nothing-here answered 401/)
    expect(out.ms).toBeLessThan(15_000)
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

  it('with the Node driver 7 (which leaves the environment to the lookup): the environment first, the endpoint not asked', async () => {
    const out = await asApp('url', {
      APP_DRIVER: 'mongodb7',
      AWS_ACCESS_KEY_ID: USER.accessKeyId,
      AWS_SECRET_ACCESS_KEY: USER.secretAccessKey,
      AWS_CONTAINER_CREDENTIALS_FULL_URI: ecsUri(),
    })
    expectLockedWith(out, USER)
    expect(requests).toEqual([])
  })

  // The devDependency `aws-sdk-credential-providers` is the real
  // @aws-sdk/credential-providers under another name, so that nothing finds
  // it unless a test puts it where `require('@aws-sdk/credential-providers')`
  // looks (NODE_PATH), as installing it in an application does.
  it('with @aws-sdk/credential-providers installed, its chain is used: a profile in ~/.aws/credentials, which only the SDK reads, comes before the ECS endpoint', async () => {
    const sdkHome = path.join(home, 'with-profile')
    mkdirSync(path.join(sdkHome, '.aws'), { recursive: true })
    writeFileSync(path.join(sdkHome, '.aws', 'credentials'), `[default]\naws_access_key_id = ${USER.accessKeyId}\naws_secret_access_key = ${USER.secretAccessKey}\n`)
    const modules = path.join(home, 'sdk', 'node_modules')
    mkdirSync(path.join(modules, '@aws-sdk'), { recursive: true })
    symlinkSync(path.join(root, 'node_modules', 'aws-sdk-credential-providers'), path.join(modules, '@aws-sdk', 'credential-providers'), 'dir')
    const out = await asApp('options', { HOME: sdkHome, NODE_PATH: modules, AWS_CONTAINER_CREDENTIALS_FULL_URI: ecsUri() })
    expectLockedWith(out, USER)
    expect(requests).toEqual([])
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
    expect(out.error.message).toMatch(/no AWS credentials: none found: no AWS_ACCESS_KEY_ID/)
    expect(out.ms).toBeLessThan(15_000)
  })
})
