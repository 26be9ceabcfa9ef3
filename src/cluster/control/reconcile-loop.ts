/**
 * Runs a reconcile pass one at a time, level-triggered: `trigger()` asks for a pass; triggers that
 * arrive while one runs coalesce into one more pass after it. A pass that throws, or that returns
 * 'again' (it made changes or lost a compare-and-swap and wants a fresh look), is run again — after
 * a backoff (clusterRetryMsMin doubling to clusterRetryMsMax) when it threw, at once otherwise.
 * Errors are handed to `onError`; the loop never stops by itself, only `close()` stops it.
 *
 * Not reentrant: the pass must not await its own loop's `idle()`.
 */
import { clusterRetryMsMax, clusterRetryMsMin } from '../../limits.js';

export type PassOutcome = 'done' | 'again';

export class ReconcileLoop {
  private running: Promise<void> | undefined;
  private pending = false;
  private closed = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private failures = 0;
  private passes = 0;

  constructor(
    private readonly pass: () => Promise<PassOutcome>,
    private readonly onError: (error: unknown) => void,
  ) {}

  /** Passes completed without throwing (for tests and metrics). */
  get completedPasses(): number {
    return this.passes;
  }

  trigger(): void {
    if (this.closed) return;
    this.pending = true;
    if (this.running === undefined && this.retryTimer === undefined) this.running = this.run();
  }

  private async run(): Promise<void> {
    while (this.pending && !this.closed) {
      this.pending = false;
      let outcome: PassOutcome;
      try {
        outcome = await this.pass();
        this.failures = 0;
        this.passes++;
      } catch (error) {
        if (this.closed) break;
        this.onError(error);
        this.failures++;
        const delayMs = Math.min(clusterRetryMsMax, clusterRetryMsMin * 2 ** Math.min(this.failures - 1, 16));
        this.running = undefined;
        this.retryTimer = setTimeout(() => {
          this.retryTimer = undefined;
          this.trigger();
        }, delayMs);
        this.retryTimer.unref();
        return;
      }
      if (outcome === 'again') this.pending = true;
    }
    this.running = undefined;
  }

  /** Resolves once no pass runs (and none is pending). */
  async idle(): Promise<void> {
    while (this.running !== undefined) await this.running;
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    await this.idle();
  }
}
