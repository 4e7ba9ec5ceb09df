import { acquireLock } from '../common/helpers/mongo-lock.mjs'

// acquireLock + try/finally: a taken lock is an expected answer (409, logged),
// and the lock is freed however the critical section ends.
export const updateBankDetails = {
  method: 'PUT',
  path: '/organisations/{organisationId}/bank-details',
  handler: async (request, h) => {
    const { organisationId } = request.params
    const lock = await acquireLock(request.locker, `bank-details-${organisationId}`, request.logger)
    if (!lock) {
      return h.response({ status: 'locked', retry: true }).code(409)
    }
    try {
      // The read-check-write this lock protects goes here.
      return { status: 'updated', organisationId }
    } finally {
      await lock.free()
    }
  },
}
