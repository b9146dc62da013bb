// How long to wait before the next poll. After a success: interval_ms. After the n-th
// failure in a row: a random time in [cap/2, cap] with cap = interval_ms × 2^n, the cap
// growing to max_backoff_ms ("equal jitter": many sources failing together spread out,
// and a failure never polls sooner than the interval). A Retry-After longer than that
// is honoured, up to max_backoff_ms.

export interface BackoffOptions {
  intervalMs: number;
  maxBackoffMs: number;
  /** In [0, 1); Math.random unless a test fixes it. */
  random?: () => number;
}

export function nextDelayMs(failuresInARow: number, opts: BackoffOptions, retryAfterMs?: number): number {
  const { intervalMs } = opts;
  if (failuresInARow <= 0) return intervalMs;
  const ceiling = Math.max(intervalMs, opts.maxBackoffMs);
  // 2^n overflows nothing: the exponent stops growing long before Infinity.
  const cap = Math.min(ceiling, intervalMs * 2 ** Math.min(failuresInARow, 40));
  const jittered = cap / 2 + (opts.random ?? Math.random)() * (cap / 2);
  const delay = Math.max(intervalMs, jittered, Math.min(retryAfterMs ?? 0, ceiling));
  return Math.round(delay);
}
