/**
 * Makes each committed transaction visible in one instant across its target partitions. A commit
 * round (one transaction's delivery) runs in three steps:
 *
 *  1. synchronously: a visibility hold (Partition.hold) on every target partition at its log end,
 *     then every batch handed to `deliver`, which appends synchronously (offsets are assigned in call
 *     order);
 *  2. the appends are acknowledged (under the targets' durability);
 *  3. once every earlier round has released, the holds are released together, in one synchronous
 *     step, and the partitions' readers are woken.
 *
 * A consumer therefore sees, at any instant, either all of a transaction's batches or none: a round
 * releases only after every earlier round released (first in, first out), and a later round's holds
 * are at or above the batches of every earlier round, so releasing never uncovers a part of another
 * round. Rounds overlap in steps 1-2; step 3 is ordered. A round whose deliveries fail keeps its
 * holds (and keeps later rounds from releasing) until `run` is called again for it and succeeds:
 * the caller retries; the partitions' plain messages stay invisible meanwhile, which is the price of
 * never uncovering part of a transaction.
 */
import type { Partition } from '../partition.js';

export interface RoundDelivery {
  partition: Partition;
  /** Appends synchronously (assigning offsets) and resolves once acknowledged. */
  deliver: () => Promise<unknown>;
}

export class CommitRounds {
  private tail: Promise<void> = Promise.resolve();
  private readonly onReleased: (partitions: Partition[]) => void;

  constructor(onReleased: (partitions: Partition[]) => void) {
    this.onReleased = onReleased;
  }

  /** Holds the round's partitions and starts its deliveries; see the header. */
  start(deliveries: RoundDelivery[]): CommitRound {
    const previous = this.tail;
    let done!: () => void;
    this.tail = new Promise<void>((resolve) => {
      done = resolve;
    });
    // Parallel lists rather than a map: a round holds few partitions (usually one).
    const partitions: Partition[] = [];
    const offsets: number[] = [];
    for (const { partition } of deliveries) {
      if (!partitions.includes(partition)) {
        const offset = partition.log.logEndOffset;
        partition.hold(offset);
        partitions.push(partition);
        offsets.push(offset);
      }
    }
    return new CommitRound(previous, partitions, offsets, done, this.onReleased, deliveries);
  }
}

export class CommitRound {
  private readonly previous: Promise<void>;
  /** The partitions held, each at the offset of the same index. */
  private readonly partitions: Partition[];
  private readonly offsets: number[];
  private readonly done: () => void;
  private readonly onReleased: (partitions: Partition[]) => void;
  private pending: RoundDelivery[];
  private released = false;

  constructor(
    previous: Promise<void>,
    partitions: Partition[],
    offsets: number[],
    done: () => void,
    onReleased: (partitions: Partition[]) => void,
    deliveries: RoundDelivery[],
  ) {
    this.previous = previous;
    this.partitions = partitions;
    this.offsets = offsets;
    this.done = done;
    this.onReleased = onReleased;
    this.pending = deliveries;
  }

  /**
   * Delivers what has not been delivered yet (in order), waits for the acknowledgements and for
   * earlier rounds, then releases. Rejects, keeping the holds, when a delivery fails: call again.
   */
  async run(): Promise<void> {
    const deliveries = this.pending;
    if (deliveries.length === 1) {
      // The common round (one target batch): no settled-result objects.
      await deliveries[0]!.deliver();
      this.pending = [];
      await this.previous;
      this.release();
      return;
    }
    const outcomes = await Promise.allSettled(
      deliveries.map((delivery) => {
        try {
          return delivery.deliver();
        } catch (error) {
          return Promise.reject(error);
        }
      }),
    );
    this.pending = deliveries.filter((_, index) => outcomes[index]!.status === 'rejected');
    if (this.pending.length > 0) {
      throw (outcomes.find((outcome) => outcome.status === 'rejected') as PromiseRejectedResult).reason;
    }
    await this.previous;
    this.release();
  }

  /** Releases the holds without delivering more (the broker is closing: recovery finishes the round). */
  abandon(): void {
    void this.previous.then(() => this.release());
  }

  private release(): void {
    if (this.released) return;
    this.released = true;
    const partitions = this.partitions;
    for (let i = 0; i < partitions.length; i++) partitions[i]!.release(this.offsets[i]!);
    this.done();
    this.onReleased(partitions);
  }
}
