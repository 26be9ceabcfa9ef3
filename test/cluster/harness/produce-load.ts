/**
 * Steady produce load for the failure tests: `workersPerPartition` loops per partition, each sending
 * one unique value at a time through a LeaderRouter (acks 'all') and recording the invocation, every
 * resend, and the acknowledgement (offset) or failure in an OperationHistory. Values are
 * `<prefix>-p<partition>-w<worker>-<n>`: small, unique, and telling where they came from.
 */
import type { LeaderRouter } from './leader-router.js';
import { errorCode } from './leader-router.js';
import type { OperationHistory } from './operation-history.js';

export class ProduceLoad {
  private running = false;
  private loops: Promise<void>[] = [];
  acked = 0;
  failed = 0;

  constructor(
    private readonly router: LeaderRouter,
    private readonly history: OperationHistory,
    private readonly partitions: readonly number[],
    private readonly workersPerPartition: number,
    private readonly prefix: string,
  ) {}

  start(): void {
    if (this.running) return;
    this.running = true;
    for (const partition of this.partitions) {
      for (let worker = 0; worker < this.workersPerPartition; worker++) {
        this.loops.push(this.loop(partition, worker));
      }
    }
  }

  private async loop(partition: number, worker: number): Promise<void> {
    for (let n = 0; this.running; n++) {
      const operation = this.history.invoke(partition, `${this.prefix}-p${partition}-w${worker}-${n}`);
      try {
        const offset = await this.router.send(partition, operation.value, (error) =>
          this.history.resend(operation, error),
        );
        this.history.ack(operation, offset);
        this.acked++;
      } catch (error) {
        this.history.fail(operation, errorCode(error));
        this.failed++;
      }
    }
  }

  /** Stops sending new values; resolves once every value sent is acknowledged or given up. */
  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
    this.loops = [];
  }
}
