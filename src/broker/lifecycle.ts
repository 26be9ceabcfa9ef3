/**
 * The open/closing state of a broker, shared by its services: every call made after `close()`
 * started fails with BROKER_CLOSING, and close waits for the requests (produce, fetch, ...) that
 * were already running.
 *
 * Concurrency: one event loop; `begin`/`settled` pairs may interleave freely.
 */
import { BrokerClosingError } from '../errors.js';

export class Lifecycle {
  private closingFlag = false;
  private inFlight = 0;
  private readonly onDrained: Array<() => void> = [];

  /** True once the broker started closing. */
  get closing(): boolean {
    return this.closingFlag;
  }

  /** Throws BROKER_CLOSING once the broker started closing. */
  assertOpen(): void {
    if (this.closingFlag) throw new BrokerClosingError();
  }

  /** Marks the broker closing; later `assertOpen` calls throw. */
  startClosing(): void {
    this.closingFlag = true;
  }

  /** A request started: close() waits for its `settled()`. */
  begin(): void {
    this.inFlight++;
  }

  settled(): void {
    this.inFlight--;
    if (this.inFlight === 0) for (const drained of this.onDrained.splice(0)) drained();
  }

  /** Resolves once no request is in flight. */
  drained(): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      this.onDrained.push(resolve);
    });
  }
}
