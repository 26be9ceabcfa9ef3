/**
 * Where the delay service appends fired copies and where it looks for them after a crash: the
 * target partitions (docs/STATE.md, "Delayed messages", exactly once: fences and scans). The one
 * seam between firing/recovery (broker-delay.ts) and the partitions it writes into:
 *
 * - `LocalDelayTargets` (a single broker): the target partitions are this broker's logs; a fence is
 *   the log end read now, a round is appended like a produce, the scan reads the local log.
 * - In a cluster a term of the service implements it over its `Forwarder`
 *   (src/cluster/forwarding/forwarded-delay-targets.ts): the target may be led by another broker.
 *
 * Contract (what broker-delay.ts relies on):
 * - `topic(name)`: the target topic's identity (creation time: a topic deleted and created again is
 *   another topic), partition count and durability, or undefined when there is none.
 * - `exists(topic, partition)`: the partition exists now (else its due messages go to `__delay_dead`).
 * - `fenceOffset`: an offset such that every copy appended to the partition after the call resolves
 *   lies at or after it.
 * - `append`: appends one round, at most once, and resolves with the next fence (an offset at or
 *   before which no later round lands); rejects when nothing was appended (UNKNOWN_TOPIC /
 *   UNKNOWN_PARTITION when the partition is gone, anything else: the round is tried again later).
 * - `findFired`: the `sw-delay-ref` values of the copies at or after `from` and the offset scanned to
 *   (a fence for the marker recovery commits), or null when the partition is gone.
 */
import { RecordCursor } from '../../format/record-batch.js';
import type { ProduceResult } from '../../protocol/broker-api.js';
import { delayRefHeader } from '../../protocol/reserved-headers.js';
import type { LogStore } from '../../storage/log-store.js';
import type { Durability } from '../../storage/sync-scheduler.js';
import type { Topic } from '../topic.js';

/** The fired copies found in a target partition from a fence on. */
export interface FiredCopies {
  refs: number[];
  /** Bytes read to find them. */
  scannedBytes: number;
  /** The offset scanned to: a fence for the marker of what was found. */
  endOffset: number;
}

/** What the delay service needs of a target topic. */
export interface DelayTopic {
  createdAtMs: number;
  partitionCount: number;
  durability: Durability;
}

export interface DelayTargets {
  topic(name: string): DelayTopic | undefined;
  exists(topic: string, partition: number): boolean;
  /** A number: read now (committed in the caller's turn); a promise: from another broker. */
  fenceOffset(topic: string, partition: number): number | Promise<number>;
  append(topic: string, partition: number, batch: Uint8Array): Promise<number>;
  findFired(topic: string, partition: number, from: number): Promise<FiredCopies | null>;
}

/** The target partitions of a single broker: its own logs. */
export class LocalDelayTargets implements DelayTargets {
  constructor(
    private readonly topicNamed: (name: string) => Topic | undefined,
    /** Appends like a produce (waking readers); null while only recovery runs. */
    private readonly produce:
      | ((topic: string, partition: number, batch: Uint8Array) => Promise<ProduceResult>)
      | null,
  ) {}

  topic(name: string): DelayTopic | undefined {
    const topic = this.topicNamed(name);
    if (topic === undefined) return undefined;
    return {
      createdAtMs: topic.createdAtMs,
      partitionCount: topic.partitionCount,
      durability: topic.config.durability,
    };
  }

  exists(topic: string, partition: number): boolean {
    return this.logOf(topic, partition) !== null;
  }

  fenceOffset(topic: string, partition: number): number {
    return this.logOf(topic, partition)?.logEndOffset ?? 0;
  }

  async append(topic: string, partition: number, batch: Uint8Array): Promise<number> {
    if (this.produce === null) throw new Error('LocalDelayTargets: recovery only, no produce');
    await this.produce(topic, partition, batch);
    return this.logOf(topic, partition)?.logEndOffset ?? 0;
  }

  findFired(topic: string, partition: number, from: number): Promise<FiredCopies | null> {
    const log = this.logOf(topic, partition);
    return Promise.resolve(
      log === null ? null : { ...findFiredCopies(log, from), endOffset: log.logEndOffset },
    );
  }

  private logOf(topic: string, partition: number): LogStore | null {
    return this.topicNamed(topic)?.partitions[partition]?.openLog ?? null;
  }
}

/** The `sw-delay-ref` values of the records of `bytes` (whole batches) at or after `from`, appended to `refs`. */
export function collectDelayRefs(bytes: Uint8Array, from: number, refs: number[]): void {
  let position = 0;
  while (position < bytes.length) {
    const cursor = new RecordCursor(bytes, position);
    while (cursor.next()) {
      if (cursor.offset < from || cursor.headerCount === 0) continue;
      for (const [header, value] of cursor.headers()) {
        if (header === delayRefHeader && value !== null) {
          const ref = Number(
            Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('latin1'),
          );
          if (Number.isSafeInteger(ref) && ref >= 0) refs.push(ref);
        }
      }
    }
    position = cursor.batchEnd;
  }
}

/** The `sw-delay-ref` values of the records of `log` from `from` on. */
export function findFiredCopies(log: LogStore, from: number): { refs: number[]; scannedBytes: number } {
  const refs: number[] = [];
  let scannedBytes = 0;
  let offset = Math.max(from, log.logStartOffset);
  while (offset < log.logEndOffset) {
    const result = log.read(offset, 4 * 1024 * 1024);
    if (result.batchCount === 0) break;
    scannedBytes += result.bytes.length;
    collectDelayRefs(result.bytes, from, refs);
    offset = result.nextOffset;
  }
  return { refs, scannedBytes };
}
