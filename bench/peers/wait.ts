/**
 * Bounded waits that leave no timer behind: a plain `Promise.race` with a sleep keeps the process
 * alive until the sleep ends, even after the other promise won.
 */

/** Waits for `promise` at most `timeoutMs`; true when it settled in time (a rejection is rethrown). */
export async function waitAtMost(promise: Promise<unknown>, timeoutMs: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), timeoutMs);
  });
  try {
    return await Promise.race([promise.then(() => true as const), timedOut]);
  } finally {
    clearTimeout(timer);
  }
}
