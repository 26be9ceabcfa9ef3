/**
 * Transaction load for the cluster transaction tests (cluster-transactions, cluster-delayed-transactions):
 * `workers` loops, each beginning a transaction, sending one message (`value(n, partition)`, with
 * `delayMs` when given) to every partition of `topic` at once, then committing, rolling it back or
 * abandoning it (never finishing it: the producer's check-back decides) as `plan(n)` says, and
 * recording its fate. A transaction whose sends failed is rolled back and counted 'send-failed'; so
 * is one whose rollback failed (never committed either way). A commit that failed ('commit-failed')
 * may have been applied: its answer can be lost in a failover.
 *
 * `problems(countOf)` checks what the partitions show against the fates, given how often each value
 * was read: a committed transaction's messages exactly once each, a failed commit's all once or none,
 * nothing of a rolled-back, abandoned or failed-before-commit one, and no transaction left pending.
 */
import type { TransactionalProducer } from '../../../src/client/transactional-producer.js';

export type TransactionFate =
  | 'pending'
  | 'committed'
  | 'commit-failed'
  | 'rolled-back'
  | 'abandoned'
  | 'send-failed';

export interface TrackedTransaction {
  n: number;
  id: number;
  values: string[];
  /** Date.now() when the commit was asked for (0: never). */
  commitAskedAt: number;
  fate: TransactionFate;
}

export interface TransactionWorkersOptions {
  producer: TransactionalProducer;
  topic: string;
  partitions: readonly number[];
  workers: number;
  /** The value of transaction `n`'s message to `partition` (unique across the test). */
  value: (n: number, partition: number) => string;
  /** What to do with transaction `n` once its messages are sent. */
  plan: (n: number) => 'commit' | 'rollback' | 'abandon';
  /** Sent with every message (counted from the commit). */
  delayMs?: number;
  /** Ids of abandoned transactions are added here (for the producer's `checkTransaction`). */
  abandoned?: Set<number>;
}

export class TransactionWorkers {
  readonly tracked: TrackedTransaction[] = [];
  /** Transactions committed so far. */
  committed = 0;
  private running = true;
  private next = 0;
  private readonly loops: Promise<void>[];

  /** Starts the workers at once. */
  constructor(private readonly options: TransactionWorkersOptions) {
    this.loops = Array.from({ length: options.workers }, async () => {
      while (this.running) await this.one().catch(() => undefined);
    });
  }

  /** Stops the workers once each has finished its transaction under way. */
  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }

  private async one(): Promise<void> {
    const { producer, topic, partitions, delayMs } = this.options;
    const n = this.next++;
    const txn = await producer.beginTransaction();
    const entry: TrackedTransaction = {
      n,
      id: txn.id,
      values: partitions.map((partition) => this.options.value(n, partition)),
      commitAskedAt: 0,
      fate: 'pending',
    };
    this.tracked.push(entry);
    try {
      await Promise.all(
        entry.values.map((value, index) =>
          txn.send(topic, {
            value,
            partition: partitions[index]!,
            ...(delayMs === undefined ? {} : { delayMs }),
          }),
        ),
      );
    } catch {
      entry.fate = 'send-failed';
      await txn.rollback().catch(() => undefined);
      return;
    }
    const plan = this.options.plan(n);
    if (plan === 'abandon') {
      this.options.abandoned?.add(txn.id);
      entry.fate = 'abandoned';
      return;
    }
    if (plan === 'rollback') {
      await txn.rollback().then(
        () => {
          entry.fate = 'rolled-back';
        },
        () => {
          entry.fate = 'send-failed'; // never committed either way
        },
      );
      return;
    }
    entry.commitAskedAt = Date.now();
    try {
      await txn.commit();
      entry.fate = 'committed';
      this.committed++;
    } catch {
      entry.fate = 'commit-failed';
    }
  }

  /** What the partitions show against the fates (see the header); one line per transaction wrong. */
  problems(countOf: (value: string) => number): string[] {
    const problems: string[] = [];
    for (const entry of this.tracked) {
      const counts = entry.values.map(countOf);
      const summary = `transaction ${entry.n} (id ${entry.id}, ${entry.fate}): ${counts.join(',')}`;
      const all = (count: number) => counts.every((c) => c === count);
      if (entry.fate === 'pending') problems.push(summary);
      if (entry.fate === 'committed' && !all(1)) problems.push(summary);
      if (entry.fate === 'commit-failed' && !(all(1) || all(0))) problems.push(summary);
      if (
        (entry.fate === 'rolled-back' || entry.fate === 'abandoned' || entry.fate === 'send-failed') &&
        !all(0)
      ) {
        problems.push(summary);
      }
    }
    return problems;
  }

  /** Transactions per fate. */
  fates(): Partial<Record<TransactionFate, number>> {
    const fates: Partial<Record<TransactionFate, number>> = {};
    for (const entry of this.tracked) fates[entry.fate] = (fates[entry.fate] ?? 0) + 1;
    return fates;
  }
}
