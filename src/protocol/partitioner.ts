/**
 * Key partitioner shared by the client's producer and the server's HTTP produce route, so a key
 * lands on the same partition whichever way it was sent (and on the partition Kafka's Java client
 * would pick for the same key bytes and partition count).
 *
 * murmur2 is exactly Kafka's `org.apache.kafka.common.utils.Utils.murmur2` (32-bit MurmurHash2,
 * seed 0x9747b28c, little-endian 4-byte blocks); a key's partition is
 * `(murmur2(keyBytes) & 0x7fffffff) % partitionCount` (Kafka's `Utils.toPositive`). Pure functions,
 * no allocation except the UTF-8 encoding of a string key.
 */
import { InvalidArgumentError } from '../errors.js';

const seed = 0x9747b28c;
const multiplier = 0x5bd1e995;

/** Kafka's murmur2 of `bytes`: a signed 32-bit integer (as Java returns it). */
export function murmur2(bytes: Uint8Array): number {
  const length = bytes.length;
  let hash = seed ^ length;
  const blockEnd = length & ~3;
  for (let index = 0; index < blockEnd; index += 4) {
    let block =
      bytes[index]! | (bytes[index + 1]! << 8) | (bytes[index + 2]! << 16) | (bytes[index + 3]! << 24);
    block = Math.imul(block, multiplier);
    block ^= block >>> 24;
    block = Math.imul(block, multiplier);
    hash = Math.imul(hash, multiplier);
    hash ^= block;
  }
  // The tail, falling through like Java's switch (length % 4): 3, then 2, then 1.
  const tailLength = length & 3;
  if (tailLength === 3) hash ^= bytes[blockEnd + 2]! << 16;
  if (tailLength >= 2) hash ^= bytes[blockEnd + 1]! << 8;
  if (tailLength >= 1) {
    hash ^= bytes[blockEnd]!;
    hash = Math.imul(hash, multiplier);
  }
  hash ^= hash >>> 13;
  hash = Math.imul(hash, multiplier);
  hash ^= hash >>> 15;
  return hash | 0;
}

/** Kafka's `Utils.toPositive`: clears the sign bit (not Math.abs, which differs for negatives). */
export function toPositive(value: number): number {
  return value & 0x7fffffff;
}

/** The partition of a key among `partitionCount` partitions. A string key is hashed as UTF-8. */
export function partitionForKey(key: Uint8Array | string, partitionCount: number): number {
  if (!Number.isSafeInteger(partitionCount) || partitionCount < 1) {
    throw new InvalidArgumentError(`partitionCount must be a positive integer, got ${partitionCount}`);
  }
  const bytes = typeof key === 'string' ? Buffer.from(key, 'utf8') : key;
  return toPositive(murmur2(bytes)) % partitionCount;
}
