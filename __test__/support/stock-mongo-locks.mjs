// Stock `mongo-locks` 3.x on the server under test, for interop tests and the
// benchmark. Its constructor asks for a TTL index in the same createIndexes
// call as the unique one; FerretDB refuses TTL indexes, and then every
// mongo-locks lock() rejects. On such a server (and only there) we hand it a
// collection whose createIndexes leaves the TTL specification out. Its hot
// path (insertOne, updateOne, deleteOne) is untouched.
import { LockManager as StockLockManager } from 'mongo-locks'

/** Whether the server accepts a TTL index (tried once on a scratch collection). */
export async function serverAcceptsTtl(db) {
  const scratch = db.collection(`ttl-probe-${process.pid}-${Date.now()}`)
  try {
    await scratch.createIndex({ expiresAt: 1 }, { expireAfterSeconds: 0 })
    return true
  } catch {
    return false
  } finally {
    await scratch.drop().catch(() => {})
  }
}

/** The collection as stock mongo-locks should see it on this server. */
export function withoutTtlIndex(collection) {
  return new Proxy(collection, {
    get(target, prop, receiver) {
      if (prop === 'createIndexes') {
        return (specs, ...rest) => target.createIndexes(specs.filter((s) => s.expireAfterSeconds === undefined), ...rest)
      }
      const value = Reflect.get(target, prop, receiver)
      return typeof value === 'function' ? value.bind(target) : value
    },
  })
}

/**
 * A stock mongo-locks LockManager on `collection`; `ttlDropped` tells
 * whether its TTL index had to be left out.
 */
export async function stockLockManager(db, collection) {
  const ttlDropped = !(await serverAcceptsTtl(db))
  const locker = new StockLockManager(ttlDropped ? withoutTtlIndex(collection) : collection)
  return { locker, ttlDropped }
}
