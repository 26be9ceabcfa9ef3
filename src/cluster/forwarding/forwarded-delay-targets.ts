/**
 * The delay service's target partitions in a cluster (src/broker/delay/delay-targets.ts states the
 * contract): one term's `Forwarder` (forwarder.ts), so a due message fires into its partition
 * whichever broker leads it, and a new term finds what an earlier one fired without a marker.
 *
 * - `topic` / `exists`: from this broker's view of etcd (the topic record: creation time, partition
 *   count), not the local topics (a broker holds only the topics it has replicas of).
 * - `fenceOffset`: `Forwarder.logEnd` (older terms fenced there first, then the replicated log end).
 * - `append`: `Forwarder.append` (at most once, acks 'all'); the next fence is the round's
 *   `lastOffset + 1` (the local log, if any, is not the leader's).
 * - `findFired`: `Forwarder.scan` from the fence for the service's batches, collecting their
 *   `sw-delay-ref` headers; the scan's end is the marker's fence.
 * - `close`: ends the term's forwarder (pending forwards reject with SERVICE_FENCED).
 */
import type { TermDelayTargets } from '../../broker/delay/broker-delay.js';
import { collectDelayRefs, type DelayTopic, type FiredCopies } from '../../broker/delay/delay-targets.js';
import type { Durability } from '../../storage/sync-scheduler.js';
import type { Forwarder } from './forwarder.js';

/** What of the cluster node's view the targets read (a topic's record in etcd). */
export interface DelayTopicView {
  topicView(
    topic: string,
  ):
    | { record: { partitions: number; createdAtMs: number; config: Record<string, number | string> } }
    | undefined;
}

const durabilities: readonly string[] = ['none', 'interval', 'always'];

export class ForwardedDelayTargets implements TermDelayTargets {
  constructor(
    private readonly forwarder: Forwarder,
    private readonly view: DelayTopicView,
    /** The durability of a topic whose record names none (the local topic's, else the default). */
    private readonly localDurability: (topic: string) => Durability | undefined,
  ) {}

  topic(name: string): DelayTopic | undefined {
    const record = this.view.topicView(name)?.record;
    if (record === undefined) return undefined;
    const configured = record.config.durability;
    return {
      createdAtMs: record.createdAtMs,
      partitionCount: record.partitions,
      durability:
        typeof configured === 'string' && durabilities.includes(configured)
          ? (configured as Durability)
          : (this.localDurability(name) ?? 'interval'),
    };
  }

  exists(topic: string, partition: number): boolean {
    const known = this.topic(topic);
    return known !== undefined && partition < known.partitionCount;
  }

  fenceOffset(topic: string, partition: number): Promise<number> {
    return this.forwarder.logEnd(topic, partition);
  }

  async append(topic: string, partition: number, batch: Uint8Array): Promise<number> {
    const result = await this.forwarder.append(topic, partition, batch);
    return result.lastOffset + 1;
  }

  async findFired(topic: string, partition: number, from: number): Promise<FiredCopies | null> {
    if (!this.exists(topic, partition)) return null;
    const refs: number[] = [];
    let scannedBytes = 0;
    const endOffset = await this.forwarder.scan(topic, partition, from, (batch) => {
      scannedBytes += batch.length;
      collectDelayRefs(batch, from, refs);
    });
    return { refs, scannedBytes, endOffset };
  }

  close(why: string): void {
    this.forwarder.close(why);
  }
}
