// An open-loop load schedule: request i is due at start + i/rate and is sent then,
// whether or not earlier ones have completed, and its latency is measured from that
// due time. A slow server therefore shows up as latency, never as a lower send rate
// (no coordinated omission).

export interface OpenLoopResult {
  /** Latency of each completed request, ms from its scheduled send time. */
  latencies: number[];
  errors: number;
  firstError?: unknown;
  /** How late sends left compared with their schedule (client-side lag), ms, worst. */
  worstSendLagMs: number;
  /** Requests per second actually sent. */
  achievedRate: number;
  /** Requests per second completed, first send to last completion: the server's capacity when below the rate. */
  completedRate: number;
}

export async function openLoop(rate: number, seconds: number, send: (i: number, due: number) => Promise<unknown>): Promise<OpenLoopResult> {
  const total = Math.round(rate * seconds);
  const interval = 1000 / rate;
  const latencies: number[] = [];
  const inFlight: Promise<void>[] = [];
  let errors = 0;
  let firstError: unknown;
  let worstSendLagMs = 0;
  const start = performance.now() + 20;
  let sent = 0;
  await new Promise<void>((resolve) => {
    const tick = () => {
      const now = performance.now();
      while (sent < total && start + sent * interval <= now) {
        const due = start + sent * interval;
        worstSendLagMs = Math.max(worstSendLagMs, now - due);
        inFlight.push(
          send(sent, due).then(
            () => void latencies.push(performance.now() - due),
            (err: unknown) => {
              errors++;
              firstError ??= err;
            },
          ),
        );
        sent++;
      }
      if (sent < total) setTimeout(tick, Math.max(0, start + sent * interval - performance.now()));
      else resolve();
    };
    tick();
  });
  const sendSeconds = (performance.now() - start) / 1000;
  await Promise.all(inFlight);
  const allSeconds = (performance.now() - start) / 1000;
  return { latencies, errors, firstError, worstSendLagMs, achievedRate: total / Math.max(sendSeconds, seconds), completedRate: total / allSeconds };
}
