// The helpers Hapi backends using mongo-locks (such as Defra's EPR LAPS
// Backend) keep in this file, now from the package (same behaviour, same
// messages):
// acquireLock(locker, resource, logger) → lock or null (logged),
// requireLock(locker, resource) → lock, or throws.
export { acquireLock, requireLock } from 'mongo-locks-native'
