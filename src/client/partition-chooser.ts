/**
 * Which partition a record goes to, Kafka-compatible:
 *  - an explicit `partition` is honoured (the caller checks it against the partition count);
 *  - a keyed record goes to `toPositive(murmur2(keyBytes)) % partitionCount` (src/protocol/
 *    partitioner.ts, the same function the server's HTTP route uses), a string key hashed as UTF-8;
 *  - a keyless record goes to the topic's sticky partition, which changes (at random, to another
 *    partition) each time a batch of it is sealed, so keyless records fill whole batches in turn.
 * String keys are encoded into a scratch buffer, not a new one per record.
 */
import { murmur2, toPositive } from '../protocol/partitioner.js';

/** String keys up to this many UTF-16 units are hashed from the scratch buffer (longer: a copy). */
const scratchKeyUnitsMax = 1024;
const scratch = Buffer.allocUnsafeSlow(3 * scratchKeyUnitsMax);
/** scratchViews[n]: the first n bytes of scratch (made on first use), since murmur2 hashes a whole view. */
const scratchViews: Array<Uint8Array | undefined> = [];

function scratchView(length: number): Uint8Array {
  let view = scratchViews[length];
  if (view === undefined) {
    view = scratch.subarray(0, length);
    scratchViews[length] = view;
  }
  return view;
}

/** The partition of `key` among `partitionCount` (Kafka's default partitioner for keyed records). */
export function partitionOfKey(key: string | Uint8Array, partitionCount: number): number {
  let bytes: Uint8Array;
  if (typeof key !== 'string') bytes = key;
  else if (key.length <= scratchKeyUnitsMax) bytes = scratchView(scratch.write(key, 0, 'utf8'));
  else bytes = Buffer.from(key, 'utf8');
  return toPositive(murmur2(bytes)) % partitionCount;
}

/** A partition other than `current` (uniformly), or 0 when there is only one. */
export function nextStickyPartition(current: number, partitionCount: number): number {
  if (partitionCount <= 1) return 0;
  if (current < 0 || current >= partitionCount) return Math.floor(Math.random() * partitionCount);
  return (current + 1 + Math.floor(Math.random() * (partitionCount - 1))) % partitionCount;
}
