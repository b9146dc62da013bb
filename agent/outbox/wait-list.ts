// Promises that settle when a condition on the outbox becomes true (records to read,
// space to append), or reject on close, failure or abort.

interface Waiter {
  ready: () => boolean;
  resolve: () => void;
  reject: (e: unknown) => void;
}

export class WaitList {
  private readonly waiters: Waiter[] = [];

  get length(): number {
    return this.waiters.length;
  }

  /** Resolves when `ready()` holds at a notify() (or at once, if it already does). */
  wait(ready: () => boolean, signal?: AbortSignal): Promise<void> {
    if (ready()) return Promise.resolve();
    if (signal?.aborted) return Promise.reject(signal.reason);
    const list = this.waiters;
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        const i = list.indexOf(waiter);
        if (i >= 0) list.splice(i, 1);
        reject(signal!.reason);
      };
      const waiter: Waiter = {
        ready,
        resolve: () => {
          signal?.removeEventListener("abort", onAbort);
          resolve();
        },
        reject: (e) => {
          signal?.removeEventListener("abort", onAbort);
          reject(e);
        },
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      list.push(waiter);
    });
  }

  /** Settles the waiters whose condition now holds. */
  notify(): void {
    for (const w of this.waiters.filter((w) => w.ready())) {
      this.waiters.splice(this.waiters.indexOf(w), 1);
      w.resolve();
    }
  }

  rejectAll(err: unknown): void {
    for (const w of this.waiters.splice(0)) w.reject(err);
  }
}
