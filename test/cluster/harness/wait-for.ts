/**
 * The one polling wait of the cluster tests: `probe` is called until it returns something other than
 * undefined, every `pollMs`; after `boundMs` the wait fails naming `what`. With `retryErrors`, a
 * probe that throws (a connection refused, NOT_COORDINATOR while a service moves) counts as "not
 * yet"; without it the error ends the wait.
 */
export interface WaitOptions {
  /** Default 30 s. */
  boundMs?: number;
  /** Default 25 ms. */
  pollMs?: number;
  /** Default false. */
  retryErrors?: boolean;
}

export const waitBoundMsDefault = 30_000;
const pollMsDefault = 25;

export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined> | T | undefined,
  options: number | WaitOptions = {},
): Promise<T> {
  const {
    boundMs = waitBoundMsDefault,
    pollMs = pollMsDefault,
    retryErrors = false,
  } = typeof options === 'number' ? { boundMs: options } : options;
  const deadline = Date.now() + boundMs;
  for (;;) {
    const attempt = Promise.resolve().then(probe);
    const value = await (retryErrors ? attempt.catch(() => undefined) : attempt);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${boundMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
}

/** Options of a wait whose probe may fail while the cluster moves (a client request), polled every 50 ms. */
export const retrying: WaitOptions = { retryErrors: true, pollMs: 50 };
