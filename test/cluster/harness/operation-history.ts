/**
 * The record of what a failure test did and saw, for history-checker.ts: every produce (invoked,
 * each resend, acknowledged at an offset or given up), every read of a partition (what a consumer
 * saw, from which broker). Time is a logical clock: one tick per event, in the order the test's
 * event loop saw them, so "acknowledged before the other was invoked" is exact, not a wall-clock guess.
 *
 * A produce's `attempts` counts its sends: more than one means a resend after an error that does not
 * say whether the first send was written (connection lost, timeout, NOT_LEADER after a wait), so the
 * value may be in the log twice ("maybe written twice"). Values must be unique per history.
 */

export type ProduceOutcome = 'pending' | 'acked' | 'failed';

export interface ProduceOperation {
  readonly value: string;
  readonly partition: number;
  /** Logical time of the first send. */
  readonly invokedAt: number;
  /** Sends of this value (1 + resends). */
  attempts: number;
  outcome: ProduceOutcome;
  /** Offset the acknowledgement named (acked only). */
  offset?: number;
  /** Logical time of the acknowledgement or of giving up. */
  endedAt?: number;
  /** The last error (failed, or the cause of the last resend). */
  error?: string;
}

export interface ReadRecord {
  offset: number;
  value: string;
}

export interface ReadObservation {
  readonly partition: number;
  /** Who answered: 'broker 2 (leader, round 3)'. */
  readonly source: string;
  readonly at: number;
  /** Consecutive records from offset `from` (what a consumer reading from there saw). */
  readonly records: readonly ReadRecord[];
}

export class OperationHistory {
  private clock = 0;
  readonly produces: ProduceOperation[] = [];
  readonly reads: ReadObservation[] = [];
  private readonly byValue = new Map<string, ProduceOperation>();

  private tick(): number {
    return ++this.clock;
  }

  invoke(partition: number, value: string): ProduceOperation {
    if (this.byValue.has(value)) throw new Error(`value ${value} invoked twice: values must be unique`);
    const operation: ProduceOperation = {
      value,
      partition,
      invokedAt: this.tick(),
      attempts: 1,
      outcome: 'pending',
    };
    this.produces.push(operation);
    this.byValue.set(value, operation);
    return operation;
  }

  /** Sent again after `error` (the earlier send may or may not have been written). */
  resend(operation: ProduceOperation, error: string): void {
    operation.attempts++;
    operation.error = error;
  }

  ack(operation: ProduceOperation, offset: number): void {
    if (operation.outcome !== 'pending') throw new Error(`${operation.value} settled twice`);
    operation.outcome = 'acked';
    operation.offset = offset;
    operation.endedAt = this.tick();
  }

  /** Given up: not acknowledged; may or may not be in the log. */
  fail(operation: ProduceOperation, error: string): void {
    if (operation.outcome !== 'pending') throw new Error(`${operation.value} settled twice`);
    operation.outcome = 'failed';
    operation.error = error;
    operation.endedAt = this.tick();
  }

  read(partition: number, source: string, records: readonly ReadRecord[]): void {
    this.reads.push({ partition, source, at: this.tick(), records: [...records] });
  }

  operation(value: string): ProduceOperation | undefined {
    return this.byValue.get(value);
  }

  /** The last error of each produce resent or given up, counted by error. */
  errors(): Record<string, number> {
    const counts: Record<string, number> = {};
    for (const operation of this.produces) {
      if (operation.error !== undefined) counts[operation.error] = (counts[operation.error] ?? 0) + 1;
    }
    return counts;
  }

  counts(): { invoked: number; acked: number; failed: number; pending: number; resent: number } {
    const counts = { invoked: this.produces.length, acked: 0, failed: 0, pending: 0, resent: 0 };
    for (const operation of this.produces) {
      counts[operation.outcome]++;
      if (operation.attempts > 1) counts.resent++;
    }
    return counts;
  }
}
