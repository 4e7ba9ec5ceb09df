'use strict'
// The help text.

const { NAME } = require('./errors')

const DEFAULT_COLLECTION = 'mongo-locks'
const DEFAULT_TIMEOUT_S = 5
const DEFAULT_INTERVAL_S = 1

const USAGE = `Usage: ${NAME} <command> [options]

See and operate the locks that mongo-locks-native (and mongo-locks) keep in MongoDB,
and the records of locker.once() kept beside them.

Commands:
  list                 the locks, by key: key, holder, held for, expires in, fencing token
                       (once() records are not locks: list only counts them)
  records              the once() records, by key: state (running, completed or failed),
                       age, expiry, result size, who ran it, fencing token
  show KEY             everything about the lock on KEY
  show --semaphore NAME
                       every permit held of the semaphore NAME
  show --rwlock NAME   the writer and every reader of the read/write lock NAME
  show --once KEY      everything about the once() record of KEY (--json: its stored result)
  watch                the list, redrawn every --interval seconds; q or Ctrl-C quits
  unlock KEY --force   delete the lock on KEY, after asking (not asked with --yes)
  unlock --semaphore NAME --permit N --force
  unlock --rwlock NAME (--writer | --reader N) --force
                       delete one slot of a semaphore or read/write lock
  help                 this text

Connection:
  --uri URI            the connection string (default: $MONGO_URL)
  --db NAME            the database (default: the database in the URI's path)
  --collection NAME    the locks' collection (default: ${DEFAULT_COLLECTION})
  --timeout SECONDS    give up on a server that does not answer after this long
                       (default: ${DEFAULT_TIMEOUT_S}); an address where nothing listens fails at once

Options:
  --json               list, records, show: JSON (ISO dates, durations in ms, the server time)
  --json-key JSON      show, unlock: a key that is not a string, as JSON (same as KEY json:JSON)
  --semaphore NAME     show, unlock: the semaphore NAME (a key, written as KEY is)
  --rwlock NAME        show, unlock: the read/write lock NAME (a key, written as KEY is)
  --once KEY           show: the once() record of KEY (written as KEY is)
  --permit N           a semaphore's permit N (show: that one in full)
  --writer             a read/write lock's writer (show: in full)
  --reader N           a read/write lock's reader N (show: in full)
  --interval SECONDS   watch: time between refreshes (default: ${DEFAULT_INTERVAL_S})
  --force              unlock: required, as its holder may still be working under the lock
  --yes, -y            unlock: delete without asking (required without a terminal)
  --help, -h           this text
  --version, -V        the version

Keys are written as list prints them, so a key can be copied from list:
  payment-991          a string key, as it is
  json:["org",7]       any other key (an array, a number, an object): json: then its JSON
  str:json:x           a string key that itself starts with json: or str:, after str:
Put -- before a key that starts with "-". A semaphore's permits and a read/write
lock's writer and readers are locks too: list shows them as json:{"_semaphore":…}
and json:{"_rwlock":…} keys; --semaphore and --rwlock find them by name.
The record of once(KEY) is the document on {"_once": KEY}: records lists them, and
unlock 'json:{"_once":KEY}' --force deletes one (the next once() of KEY runs again).
Times are measured on the server's clock (read with hello), not this machine's.

Exit status:
  0  done
  1  server or connection error
  2  bad arguments, or an unlock not confirmed
  3  no lock on that key (or no such permit, reader, writer or once() record)
  4  no such database or collection (the error names the ones that exist)

Examples:
  MONGO_URL='mongodb://db.internal:27017/payments' npx ${NAME} list
  npx ${NAME} show bank-details-42 --uri mongodb://localhost:27017 --db payments
  npx ${NAME} show 'json:["org",7]'
  npx ${NAME} show --semaphore exports
  npx ${NAME} records
  npx ${NAME} show --once refund-2291 --json
  npx ${NAME} unlock bank-details-42 --force
  npx ${NAME} unlock --semaphore exports --permit 2 --force --yes
`

module.exports = { USAGE, DEFAULT_COLLECTION, DEFAULT_TIMEOUT_S, DEFAULT_INTERVAL_S }
