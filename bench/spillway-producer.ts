/**
 * How both Spillway bench suites that go over the network (broker, compare) produce: the same
 * producer settings and the same send loop, so their figures compare, and stated in their rows
 * (`spillwayProducerSettings`).
 *
 * Settings: the producer's defaults with lingerMs 0: batches of 64 KiB, grown for large records to
 * 16 records (16 KiB values: 15 in 256 KiB batches, at most 256 KiB), at most 4 MiB of batches in flight per
 * partition and 16 MiB per connection, the native CRC32C (what the `spillway` root entry registers;
 * the bench imports the engine anyway). Loop: producer.sendBatch() calls of `sendBatchMessages`
 * messages, with at most `windowMessages` messages unacknowledged per producer (each suite states its
 * window), no call issued past the deadline.
 */

import { useClientCrc32c } from '../src/client/client-crc32c.js';
import type { Producer, ProducerMessage } from '../src/client/index.js';
import { crc32cImplementation, crc32c as nativeCrc32c } from '../src/native.js';
import { pipelined } from './peers/load.js';

useClientCrc32c(nativeCrc32c, `native ${crc32cImplementation()}`);

/** Producer options of every network bench run (the rest are the defaults). */
export const spillwayProducerOptions = { lingerMs: 0 } as const;

/** Messages per sendBatch call: a quarter of the compare window (1,000), so 4 calls are in flight (100: 10 calls, 0.5–1x the always 100 B figure of 250 in two A/B rounds). */
export const sendBatchMessages = 250;

/** One line for the rows: what the client did. */
export const spillwayProducerSettings =
  `client: lingerMs 0, batchBytes 64 KiB (adaptive: 16 records of large values, <= 256 KiB), ` +
  `in flight <= 4 MiB/partition and 16 MiB/connection, native CRC32C, sendBatch of ${sendBatchMessages}`;

/**
 * Sends `count` messages (values taken round-robin from `pool`) with sendBatch calls of
 * sendBatchMessages, at most `windowMessages` unacknowledged; nothing new past `deadline`
 * (performance.now() ms). Resolves with the messages acknowledged; rejects on the first failure.
 */
export function produceWithSendBatch(
  producer: Producer,
  topic: string,
  pool: readonly Uint8Array[],
  count: number,
  windowMessages: number,
  deadline: number,
): Promise<number> {
  const messages: ProducerMessage[] = pool.map((value) => ({ value }));
  const calls = Math.ceil(count / sendBatchMessages);
  const window = Math.max(1, Math.floor(windowMessages / sendBatchMessages));
  return pipelined(calls, window, deadline, async (call) => {
    const first = call * sendBatchMessages;
    const size = Math.min(sendBatchMessages, count - first);
    const chunk = new Array<ProducerMessage>(size);
    for (let i = 0; i < size; i++) chunk[i] = messages[(first + i) % messages.length]!;
    await producer.sendBatch(topic, chunk);
    return size;
  });
}
