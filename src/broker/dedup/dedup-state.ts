/**
 * The state machine of the msg-id dedup index (state-machine.ts), kept in the internal state log
 * `__dedup` (dedup-store.ts): per dedup topic, every msgId recorded within the window with the
 * partition and offset of its first copy, in time buckets, and per partition how far the data log
 * was indexed (the mark: every msgId below it is in the index or expired).
 *
 * Entries (record key = the topic name; value msgpack; docs/STATE.md "Msg-id dedup"):
 *
 *   ids      { t: 'i', b, i: [id...], p: [partition...], o: [offset...] }   ids recorded in the bucket starting at b (wall ms)
 *   mark     { t: 'm', p, o }     every msgId of partition p below offset o is indexed (or expired);
 *                                 written by the sweep and at open, never by `ids`; marks only grow...
 *   forget   { t: 'f', p, o }     ...except here: ids of partition p at offsets >= o are gone (the data
 *                                 log lost them in a crash) and the mark goes back to o
 *   expire   { t: 'e', b }        the buckets starting before b are dropped with their ids
 *   drop     null (tombstone)     the topic is gone (deleted, or dedup switched off)
 *
 * An id is recorded once: an `ids` entry for an id the topic already holds leaves the first copy
 * (the service never commits one; replay stays deterministic if it did). Snapshot: per topic, its
 * buckets as `ids` entries of at most dedupEntryIdsMax ids, then its marks.
 *
 * Memory: one Map<msgId, number> per topic (the number packs offset x partitionCountMax +
 * partition) and one array of id references per bucket; docs/BENCHMARKS.md has the measured bytes
 * per id. Positions are exact up to offsets of 2^41 (offset x 4096 stays a safe integer).
 */
import { dedupEntryIdsMax, msgIdBytesMax, partitionCountMax } from '../../limits.js';
import { type EntryCodec, type StateMachine, statePackr } from '../state/state-machine.js';

export type DedupEntry =
  | {
      type: 'ids';
      topic: string;
      bucketMs: number;
      ids: string[];
      partitions: number[];
      offsets: number[];
    }
  | { type: 'mark'; topic: string; partition: number; offset: number }
  | { type: 'forget'; topic: string; partition: number; fromOffset: number }
  | { type: 'expire'; topic: string; beforeMs: number }
  | { type: 'drop'; topic: string };

/** Largest offset a position packs exactly. */
export const dedupOffsetMax = 2 ** 41 - 1;

export function packPosition(partition: number, offset: number): number {
  return offset * partitionCountMax + partition;
}
export function positionPartition(packed: number): number {
  return packed % partitionCountMax;
}
export function positionOffset(packed: number): number {
  return Math.floor(packed / partitionCountMax);
}

interface Bucket {
  startMs: number;
  ids: string[];
}

/** The index of one topic. */
export class TopicIds {
  /** msgId -> packed position of its first copy. */
  readonly positions = new Map<string, number>();
  /** Oldest first. */
  readonly buckets: Bucket[] = [];
  /** Partition -> indexed up to this offset (exclusive). */
  readonly marks = new Map<number, number>();

  get oldestBucketMs(): number | null {
    return this.buckets.length === 0 ? null : this.buckets[0]!.startMs;
  }

  mark(partition: number): number {
    return this.marks.get(partition) ?? 0;
  }

  bucketAt(startMs: number): Bucket {
    const buckets = this.buckets;
    let index = buckets.length;
    while (index > 0 && buckets[index - 1]!.startMs > startMs) index--;
    if (index > 0 && buckets[index - 1]!.startMs === startMs) return buckets[index - 1]!;
    const bucket = { startMs, ids: [] };
    buckets.splice(index, 0, bucket);
    return bucket;
  }

  /** Returns how many ids were added. */
  add(bucketMs: number, ids: string[], partitions: number[], offsets: number[]): number {
    const bucket = this.bucketAt(bucketMs);
    let added = 0;
    for (let index = 0; index < ids.length; index++) {
      const id = ids[index]!;
      const partition = partitions[index]!;
      const offset = offsets[index]!;
      if (this.positions.has(id)) continue;
      this.positions.set(id, packPosition(partition, offset));
      bucket.ids.push(id);
      added++;
    }
    if (bucket.ids.length === 0) this.buckets.splice(this.buckets.indexOf(bucket), 1);
    return added;
  }

  /** Drops the buckets starting before `beforeMs`; returns how many ids went. */
  expire(beforeMs: number): number {
    let removed = 0;
    while (this.buckets.length > 0 && this.buckets[0]!.startMs < beforeMs) {
      const bucket = this.buckets.shift()!;
      for (const id of bucket.ids) if (this.positions.delete(id)) removed++;
    }
    return removed;
  }

  /** Forgets partition's ids at offsets >= fromOffset; returns how many went. */
  forget(partition: number, fromOffset: number): number {
    let removed = 0;
    for (const [id, packed] of this.positions) {
      if (positionPartition(packed) === partition && positionOffset(packed) >= fromOffset) {
        this.positions.delete(id);
        removed++;
      }
    }
    if (removed > 0) {
      for (const bucket of this.buckets) bucket.ids = bucket.ids.filter((id) => this.positions.has(id));
      for (let index = this.buckets.length - 1; index >= 0; index--) {
        if (this.buckets[index]!.ids.length === 0) this.buckets.splice(index, 1);
      }
    }
    if (this.mark(partition) > fromOffset) this.marks.set(partition, fromOffset);
    return removed;
  }
}

export class DedupState implements StateMachine<DedupEntry> {
  private readonly topicIds = new Map<string, TopicIds>();
  private idCount = 0;

  /** Ids held, all topics together. */
  get size(): number {
    return this.idCount;
  }

  topic(name: string): TopicIds | undefined {
    return this.topicIds.get(name);
  }

  topicNames(): string[] {
    return [...this.topicIds.keys()];
  }

  private topicOf(name: string): TopicIds {
    let ids = this.topicIds.get(name);
    if (ids === undefined) {
      ids = new TopicIds();
      this.topicIds.set(name, ids);
    }
    return ids;
  }

  apply(entry: DedupEntry): void {
    switch (entry.type) {
      case 'ids':
        this.idCount += this.topicOf(entry.topic).add(
          entry.bucketMs,
          entry.ids,
          entry.partitions,
          entry.offsets,
        );
        return;
      case 'mark': {
        const ids = this.topicOf(entry.topic);
        if (entry.offset > ids.mark(entry.partition)) ids.marks.set(entry.partition, entry.offset);
        return;
      }
      case 'forget':
        this.idCount -= this.topicOf(entry.topic).forget(entry.partition, entry.fromOffset);
        return;
      case 'expire': {
        const ids = this.topicIds.get(entry.topic);
        if (ids !== undefined) this.idCount -= ids.expire(entry.beforeMs);
        return;
      }
      case 'drop': {
        const ids = this.topicIds.get(entry.topic);
        if (ids !== undefined) this.idCount -= ids.positions.size;
        this.topicIds.delete(entry.topic);
        return;
      }
    }
  }

  *snapshot(): Iterable<DedupEntry> {
    for (const [topic, ids] of this.topicIds) {
      for (const bucket of ids.buckets) {
        for (let start = 0; start < bucket.ids.length; start += dedupEntryIdsMax) {
          const chunk = bucket.ids.slice(start, start + dedupEntryIdsMax);
          const partitions: number[] = [];
          const offsets: number[] = [];
          for (const id of chunk) {
            const packed = ids.positions.get(id)!;
            partitions.push(positionPartition(packed));
            offsets.push(positionOffset(packed));
          }
          yield { type: 'ids', topic, bucketMs: bucket.startMs, ids: chunk, partitions, offsets };
        }
      }
      for (const [partition, offset] of ids.marks) yield { type: 'mark', topic, partition, offset };
    }
  }

  reset(): void {
    this.topicIds.clear();
    this.idCount = 0;
  }
}

function integerIn(value: unknown, min: number, max: number, what: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    throw new Error(`__dedup entry ${what} ${String(value)} is not an integer in [${min}, ${max}]`);
  }
  return value;
}

function integerList(value: unknown, length: number, min: number, max: number, what: string): number[] {
  if (!Array.isArray(value) || value.length !== length)
    throw new Error(`__dedup entry ${what} is not a list of ${length}`);
  for (const item of value) integerIn(item, min, max, what);
  return value as number[];
}

export const dedupCodec: EntryCodec<DedupEntry> = {
  encode(entry) {
    const key = entry.topic;
    switch (entry.type) {
      case 'ids':
        return {
          key,
          value: statePackr.pack({
            t: 'i',
            b: entry.bucketMs,
            i: entry.ids,
            p: entry.partitions,
            o: entry.offsets,
          }),
        };
      case 'mark':
        return { key, value: statePackr.pack({ t: 'm', p: entry.partition, o: entry.offset }) };
      case 'forget':
        return { key, value: statePackr.pack({ t: 'f', p: entry.partition, o: entry.fromOffset }) };
      case 'expire':
        return { key, value: statePackr.pack({ t: 'e', b: entry.beforeMs }) };
      case 'drop':
        return { key, value: null };
    }
  },
  decode(record) {
    const topic = record.keyText();
    if (topic === null || topic.length === 0) throw new Error('__dedup entry without a topic');
    const bytes = record.value();
    if (bytes === null) return { type: 'drop', topic };
    const value: unknown = statePackr.unpack(bytes);
    if (typeof value !== 'object' || value === null) throw new Error('__dedup entry value is not a map');
    const fields = value as Record<string, unknown>;
    const partitionMax = partitionCountMax - 1;
    switch (fields['t']) {
      case 'i': {
        const ids = fields['i'];
        if (!Array.isArray(ids) || ids.length > dedupEntryIdsMax)
          throw new Error('__dedup ids is not a list');
        for (const id of ids) {
          if (typeof id !== 'string' || id.length === 0 || id.length > msgIdBytesMax) {
            throw new Error('__dedup id is not a msgId');
          }
        }
        return {
          type: 'ids',
          topic,
          bucketMs: integerIn(fields['b'], 0, Number.MAX_SAFE_INTEGER, 'bucket'),
          ids: ids as string[],
          partitions: integerList(fields['p'], ids.length, 0, partitionMax, 'partitions'),
          offsets: integerList(fields['o'], ids.length, 0, dedupOffsetMax, 'offsets'),
        };
      }
      case 'm':
        return {
          type: 'mark',
          topic,
          partition: integerIn(fields['p'], 0, partitionMax, 'partition'),
          offset: integerIn(fields['o'], 0, Number.MAX_SAFE_INTEGER, 'offset'),
        };
      case 'f':
        return {
          type: 'forget',
          topic,
          partition: integerIn(fields['p'], 0, partitionMax, 'partition'),
          fromOffset: integerIn(fields['o'], 0, Number.MAX_SAFE_INTEGER, 'offset'),
        };
      case 'e':
        return {
          type: 'expire',
          topic,
          beforeMs: integerIn(fields['b'], 0, Number.MAX_SAFE_INTEGER, 'bucket'),
        };
      default:
        throw new Error(`unknown __dedup entry type ${String(fields['t'])}`);
    }
  },
};
