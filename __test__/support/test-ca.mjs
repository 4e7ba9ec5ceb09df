// A throwaway private certificate authority for the TLS tests: a CA, a
// server certificate for localhost / 127.0.0.1 and a client certificate,
// made with the `openssl` command (no npm dependency), all PEM. Keys are
// EC P-256 in PKCS#8 ("BEGIN PRIVATE KEY"), which rustls, Go and Node all
// read; the client key also comes encrypted with a passphrase (PKCS#8
// PBES2, "BEGIN ENCRYPTED PRIVATE KEY"), for tlsCertificateKeyFilePassword.
// Certificates are X.509 v3, sha256, valid from now for 3 days (a process
// whose clock is set back, e.g. by faketime, sees them as not yet valid).
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import os from 'node:os'
import path from 'node:path'

const DAYS = '3'

function openssl(args, cwd) {
  try {
    return execFileSync('openssl', args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] })
  } catch (e) {
    throw new Error(`openssl ${args.join(' ')} failed: ${e.stderr?.toString() || e.message}`)
  }
}

// One config file for every extension section (works with OpenSSL 1.1.1 and 3).
const extensions = (serverNames) => `
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = ${serverNames}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
`

/**
 * Makes a fresh CA and certificates in `dir` (default: a new temporary
 * directory) and returns
 * `{ dir, caFile, caPem, caKeyFile, serverCertFile, serverKeyFile, serverPem,
 *    clientCertFile, clientKeyFile, clientPemFile, clientPem,
 *    clientEncryptedKeyFile, clientEncryptedPemFile, clientEncryptedPem, passphrase }`.
 * `clientPemFile` holds the client certificate and its key together, as
 * the `tlsCertificateKeyFile` URI option wants; `clientEncryptedPemFile` the
 * same with the key encrypted by `passphrase` (`tlsCertificateKeyFilePassword`).
 * `…Pem` are the texts of the files of the same name. `serverNames`: the
 * server certificate's subjectAltName (another name makes a certificate
 * that does not name the host the tests connect to).
 */
export function makeTestCA(dir = mkdtempSync(path.join(os.tmpdir(), 'mongo-locks-ca-')), { serverNames = 'DNS:localhost, IP:127.0.0.1' } = {}) {
  const f = (name) => path.join(dir, name)
  writeFileSync(f('extensions.cnf'), extensions(serverNames))
  const key = (name) => openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', f(name)])
  const serial = () => `0x${randomBytes(16).toString('hex').replace(/^[89a-f]/, '1')}`
  // Signs `name`.key's CSR with the CA: `name`.pem, extensions from section `name`.
  const sign = (name, subject) => {
    openssl(['req', '-new', '-key', f(`${name}.key`), '-subj', subject, '-out', f(`${name}.csr`)])
    openssl(['x509', '-req', '-in', f(`${name}.csr`), '-CA', f('ca.pem'), '-CAkey', f('ca.key'),
      '-set_serial', serial(), '-days', DAYS, '-sha256',
      '-extfile', f('extensions.cnf'), '-extensions', name, '-out', f(`${name}.pem`)])
  }

  key('ca.key')
  // A CSR signed by its own key, so that the extensions come only from [ca]
  // (`req -x509` would add the config's defaults on some versions).
  openssl(['req', '-new', '-key', f('ca.key'), '-subj', '/O=mongo-locks-native tests/CN=mongo-locks-native test CA', '-out', f('ca.csr')])
  openssl(['x509', '-req', '-in', f('ca.csr'), '-signkey', f('ca.key'), '-set_serial', serial(),
    '-days', DAYS, '-sha256', '-extfile', f('extensions.cnf'), '-extensions', 'ca', '-out', f('ca.pem')])

  key('server.key')
  sign('server', '/O=mongo-locks-native tests/CN=localhost')
  key('client.key')
  sign('client', '/O=mongo-locks-native tests/CN=mongo-locks-native test client')

  const passphrase = `test-${randomBytes(6).toString('hex')}`
  openssl(['pkcs8', '-topk8', '-in', f('client.key'), '-v2', 'aes-256-cbc', '-v2prf', 'hmacWithSHA256',
    '-passout', `pass:${passphrase}`, '-out', f('client-encrypted.key')])

  const read = (name) => readFileSync(f(name), 'utf8')
  const clientPem = read('client.pem') + read('client.key')
  const clientEncryptedPem = read('client.pem') + read('client-encrypted.key')
  writeFileSync(f('client-bundle.pem'), clientPem)
  writeFileSync(f('client-encrypted-bundle.pem'), clientEncryptedPem)

  return {
    dir,
    caFile: f('ca.pem'),
    caPem: read('ca.pem'),
    caKeyFile: f('ca.key'),
    serverCertFile: f('server.pem'),
    serverKeyFile: f('server.key'),
    serverPem: read('server.pem'),
    clientCertFile: f('client.pem'),
    clientKeyFile: f('client.key'),
    clientPemFile: f('client-bundle.pem'),
    clientPem,
    clientEncryptedKeyFile: f('client-encrypted.key'),
    clientEncryptedPemFile: f('client-encrypted-bundle.pem'),
    clientEncryptedPem,
    passphrase,
  }
}
