/**
 * The memory budget of a server's HTTP side, shared by every exchange (docs/PROTOCOL.md, "Hard
 * limits"):
 * - `receivingBytes`: bytes of request bodies received and held (from the first chunk until the
 *   exchange ends), at most `receiveMaxBytes` in all: a chunk that would pass it fails its request
 *   with 503 BACKPRESSURE and closes that connection;
 * - `sendingBytes`: bytes of answers written but not yet taken by the kernel (a client that does not
 *   read, or pipelines requests without reading the answers); while above `sendMaxBytes`, requests
 *   that would add a large answer (fetches) are refused with 503 BACKPRESSURE at once;
 * - `bodyTimeoutMs`: how long a body may take to arrive (408 TIMEOUT), on `clock`.
 * Single-threaded, like the server.
 */
import type { Clock } from '../clock.js';

export class HttpBudget {
  receivingBytes = 0;
  sendingBytes = 0;
  /** Requests refused or connections closed because a budget was spent (metrics). */
  refusals = 0;

  constructor(
    readonly receiveMaxBytes: number,
    readonly sendMaxBytes: number,
    readonly bodyTimeoutMs: number,
    readonly clock: Clock,
  ) {}

  /** True while answers waiting for slow readers hold more than the send budget. */
  get sendFull(): boolean {
    return this.sendingBytes > this.sendMaxBytes;
  }
}
