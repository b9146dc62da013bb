// Latency summaries and number formatting for the report.

export interface LatencySummary {
  count: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
}

/** Nearest-rank percentile of ascending `sorted` (p in 0..100). */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

export function summarize(samples: readonly number[]): LatencySummary {
  const sorted = [...samples].sort((a, b) => a - b);
  const sum = sorted.reduce((a, b) => a + b, 0);
  return {
    count: sorted.length,
    p50: percentile(sorted, 50),
    p90: percentile(sorted, 90),
    p99: percentile(sorted, 99),
    max: sorted.length ? sorted[sorted.length - 1]! : NaN,
    mean: sorted.length ? sum / sorted.length : NaN,
  };
}

export function median(values: readonly number[]): number {
  return percentile([...values].sort((a, b) => a - b), 50);
}

/** 123456.7 -> "123,457". */
export function int(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}

/** Milliseconds with precision that suits their size. */
export function ms(n: number): string {
  return `${n < 10 ? n.toFixed(2) : n < 100 ? n.toFixed(1) : Math.round(n)} ms`;
}

export function ratio(n: number): string {
  return `${n.toFixed(2)} x`;
}

/** Seconds since `start` (a performance.now() value). */
export function secondsSince(start: number): number {
  return (performance.now() - start) / 1000;
}

export const sleep = (msec: number) => new Promise<void>((r) => setTimeout(r, msec));
