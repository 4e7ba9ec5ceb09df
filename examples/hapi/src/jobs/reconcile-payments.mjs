// A scheduled job that every instance of the service starts and one of them
// runs per interval: the plugin ticks it on all instances at the same
// wall-clock instants, and the instance that takes the job's lock keeps it
// for `minHoldMs` (by default 90% of the interval) even when the work ends
// sooner, so the others skip this interval (ShedLock's "lock at least for").
// `signal` aborts if the lock is lost mid-run: stop writing then.
export function reconcilePayments({ everyMs, onRun }) {
  return {
    everyMs,
    run: async (signal) => {
      // Reconcile yesterday's payments here, checking signal.aborted
      // between batches.
      onRun?.({ at: new Date(), aborted: signal.aborted })
    },
  }
}
