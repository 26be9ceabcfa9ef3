/**
 * The delay service's target partitions in a cluster (src/broker/delay/delay-targets.ts states the
 * contract): one term's `Forwarder` (forwarder.ts), so a due message fires into its partition
 * whichever broker leads it, and a new term finds what an earlier one fired without a marker.
 *
 * - `exists`: the topic is known to this broker (the cluster creates every topic on every broker)
 *   and has the partition.
 * - `fenceOffset`: `Forwarder.logEnd` (older terms fenced there first, then the replicated log end).
 * - `append`: `Forwarder.append` (at most once, acks 'all'); the next fence is the round's
 *   `lastOffset + 1` (the local log, if any, is not the leader's).
 * - `findFired`: `Forwarder.scan` from the fence for the service's batches, collecting their
 *   `sw-delay-ref` headers; the scan's end is the marker's fence.
 * - `close`: ends the term's forwarder (pending forwards reject with SERVICE_FENCED).
 */
import type { TermDelayTargets } from '../../broker/delay/broker-delay.js';
import { collectDelayRefs, type FiredCopies } from '../../broker/delay/delay-targets.js';
import type { Topic } from '../../broker/topic.js';
import type { Forwarder } from './forwarder.js';

export class ForwardedDelayTargets implements TermDelayTargets {
  constructor(
    private readonly forwarder: Forwarder,
    private readonly topicNamed: (name: string) => Topic | undefined,
  ) {}

  exists(topic: string, partition: number): boolean {
    const known = this.topicNamed(topic);
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
