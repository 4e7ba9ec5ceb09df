// The seed's helpers, now from the package (same behaviour, same messages):
// acquireLock(locker, resource, logger) → lock or null (logged),
// requireLock(locker, resource) → lock, or throws.
export { acquireLock, requireLock } from 'mongo-locks-native'
