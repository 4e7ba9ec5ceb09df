// Small numeric helpers shared by the scenarios and the report.

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** Nearest-rank percentile of `values` (0 < p ≤ 100); null for no values. */
export function percentile(values, p) {
  if (values.length === 0) return null
  const sorted = [...values].sort((a, b) => a - b)
  const rank = Math.ceil((p / 100) * sorted.length)
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]
}

/** Median of the non-null values; null when there are none. */
export function median(values) {
  const present = values.filter((v) => v !== null && v !== undefined && Number.isFinite(v))
  if (present.length === 0) return null
  const sorted = present.sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

/** a / b, or null when either is missing or b is zero (a ratio would mislead). */
export function ratio(a, b) {
  if (a === null || b === null || a === undefined || b === undefined || b === 0) return null
  return a / b
}

/** Runs `task(i)` for i in [0, count) with at most `concurrency` in flight. */
export async function pool(count, concurrency, task) {
  let next = 0
  const worker = async () => {
    while (next < count) await task(next++)
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker))
}
