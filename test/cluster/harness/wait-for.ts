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

/**
 * Runs `create` (a topic creation in the cluster) until the cluster counts the live brokers it needs:
 * on a loaded machine a broker's 1 s etcd session may lapse and come back, and meanwhile the creation
 * is refused with INVALID_ARGUMENT "replicationFactor N exceeds the M live brokers" (refused before
 * anything is written, so trying again is safe). Any other error ends the wait.
 */
export async function whenBrokersLive<T>(create: () => Promise<T>, boundMs = waitBoundMsDefault): Promise<T> {
  let refusal: unknown;
  const created = await waitFor(
    'enough live brokers to create the topic',
    () =>
      create().then(
        (value) => ({ value }),
        (error: unknown) => {
          if (error instanceof Error && /exceeds the \d+ live brokers/.test(error.message)) {
            refusal = error;
            return undefined;
          }
          throw error;
        },
      ),
    { boundMs, pollMs: 100 },
  ).catch((error: unknown) => {
    throw refusal ?? error;
  });
  return created.value;
}
