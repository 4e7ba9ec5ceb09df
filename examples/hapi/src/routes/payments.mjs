import { requireLock } from '../common/helpers/mongo-lock.mjs'

// requireLock: for work that should never find its lock taken. If it is, the
// thrown Error makes Hapi answer 500 and log it; for a graceful answer use
// acquireLock (bank-details.mjs).
export const processPayment = {
  method: 'POST',
  path: '/payments/{paymentId}/process',
  handler: async (request) => {
    const { paymentId } = request.params
    const lock = await requireLock(request.locker, `payment-processing-${paymentId}`)
    try {
      // Take the payment here.
      return { status: 'processed', paymentId }
    } finally {
      await lock.free()
    }
  },
}
