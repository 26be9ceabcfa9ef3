/**
 * `__txn_half`: the half messages of transactions, invisible to the consumers of their target topics.
 * Partition 0 of an internal topic (`dataDir/topics/__txn_half/0/`), durability `interval`; a half
 * sent to a topic with durability `always` is acknowledged only after an fdatasync covering it
 * (`append(..., 'always')`), so each half is durable under its target topic's durability.
 *
 * Layout: one batch per half, holding one record (built here, record-batch format):
 *
 *   key    UTF-8 JSON [transactionId, topic, partition] or, for a numbered send (TXN_SEND `seq`),
 *          [transactionId, topic, partition, sendKey] with sendKey = seq * 65536 + the part's index
 *   value  the producer's batch, byte for byte as it was sent (baseOffset 0)
 *
 * In a cluster the half log is partition 0 of the replicated internal topic `__txn_half`: the
 * service answers a send only once the in-sync replicas have it (BrokerTransactions), and the
 * sendKey lets a coordinator that took over recognise a resend of a half it already holds.
 *
 * Segments wholly below the oldest unfinished transaction's `halfFrom` are deleted
 * (`deleteBelow`): recovery scans from there (`scan`), so its work is bounded by the halves of
 * unfinished transactions plus one segment.
 *
 * Buffer ownership: `read` and `scan` hand out views of mapped segments, valid during the call.
 */

import { batchLengthAt } from '../../format/batch-header.js';
import { BatchBuilder, RecordCursor } from '../../format/record-batch.js';
import { crc32c as nativeCrc32c } from '../../native.js';
import type { Durability } from '../../protocol/types.js';
import type { AppendResult } from '../../storage/log-store.js';
import type { PartitionLog } from '../../storage/partition-log.js';

export const halfTopicName = '__txn_half';

/** Where a half is: its offset in `__txn_half`, its target and its size. */
export interface HalfLocation {
  halfOffset: number;
  topic: string;
  partition: number;
  /** Bytes of the producer's batch. */
  bytes: number;
  /** Records in it. */
  records: number;
  /** seq * 65536 + part index of the TXN_SEND that stored it; -1 for an unnumbered send. */
  sendKey: number;
}

/** The sendKey of part `part` of numbered send `seq`, or -1 (sends without a number). */
export function sendKeyOf(seq: number | null | undefined, part: number): number {
  return seq === null || seq === undefined ? -1 : seq * 65536 + part;
}

/** Topic names whose JSON form is kept (cleared when full). */
const quotedTopicsMax = 1024;

const crc32cOfBytes = (bytes: Uint8Array): number => nativeCrc32c(bytes);

function parseKey(text: string | null): [number, string, number, number] | null {
  if (text === null) return null;
  try {
    const parts: unknown = JSON.parse(text);
    if (
      Array.isArray(parts) &&
      (parts.length === 3 || (parts.length === 4 && Number.isSafeInteger(parts[3]))) &&
      Number.isSafeInteger(parts[0]) &&
      typeof parts[1] === 'string' &&
      Number.isSafeInteger(parts[2])
    ) {
      return [parts[0] as number, parts[1] as string, parts[2] as number, (parts[3] as number) ?? -1];
    }
  } catch {
    return null;
  }
  return null;
}

export class HalfLog {
  readonly log: PartitionLog;
  private readonly builder = new BatchBuilder({ initialBytes: 64 * 1024 });
  private readonly quotedTopics = new Map<string, string>();

  constructor(log: PartitionLog) {
    this.log = log;
  }

  get endOffset(): number {
    return this.log.logEndOffset;
  }

  /**
   * Appends one half (now: its offset is assigned before this returns); resolves with the append
   * once durable under `durability` (the target topic's). The batch is copied: the caller may reuse
   * it once this returns. Throws (rather than rejects) when the append cannot even start.
   */
  append(
    transactionId: number,
    topic: string,
    partition: number,
    batch: Uint8Array,
    durability: Durability,
    nowMs: number,
    sendKey = -1,
  ): Promise<AppendResult> {
    const builder = this.builder;
    builder.reset();
    const numbered = sendKey >= 0 ? `,${sendKey}` : '';
    builder.append({
      key: `[${transactionId},${this.quotedTopic(topic)},${partition}${numbered}]`,
      value: batch,
      timestamp: nowMs,
    });
    const wrapped = builder.finish({ crc32c: crc32cOfBytes });
    const appended = this.log.append(wrapped);
    if (durability !== 'always') return appended;
    return Promise.all([appended, this.log.flush()]).then(([result]) => result);
  }

  /** `topic` as a JSON string (cached: a few topics take every half). */
  private quotedTopic(topic: string): string {
    let quoted = this.quotedTopics.get(topic);
    if (quoted === undefined) {
      if (this.quotedTopics.size >= quotedTopicsMax) this.quotedTopics.clear();
      quoted = JSON.stringify(topic);
      this.quotedTopics.set(topic, quoted);
    }
    return quoted;
  }

  /** The producer's batch of the half at `halfOffset`, as a copy. */
  read(halfOffset: number): Uint8Array {
    const result = this.log.read(halfOffset, 1);
    if (result.batchCount === 0 || result.firstOffset !== halfOffset) {
      throw new Error(`no half at offset ${halfOffset} of ${halfTopicName}`);
    }
    const cursor = new RecordCursor(result.bytes, 0);
    if (!cursor.next()) throw new Error(`empty half batch at offset ${halfOffset}`);
    const value = cursor.value();
    if (value === null) throw new Error(`half at offset ${halfOffset} has no batch`);
    return Buffer.from(value);
  }

  /** Every half from `fromOffset` to the end, in log order: (transactionId, location). */
  scan(fromOffset: number, visit: (transactionId: number, location: HalfLocation) => void): void {
    const log = this.log;
    let offset = Math.max(fromOffset, log.logStartOffset);
    const end = log.logEndOffset;
    while (offset < end) {
      const result = log.read(offset, 1024 * 1024);
      if (result.batchCount === 0) break;
      let position = 0;
      while (position < result.bytes.length) {
        const length = batchLengthAt(result.bytes, position);
        const cursor = new RecordCursor(result.bytes, position);
        if (cursor.next()) {
          const key = parseKey(cursor.keyText());
          const value = cursor.value();
          if (key !== null && value !== null && value.length >= 24) {
            visit(key[0], {
              halfOffset: cursor.offset,
              topic: key[1],
              partition: key[2],
              bytes: value.length,
              records: new DataView(value.buffer, value.byteOffset, value.length).getInt32(20, true),
              sendKey: key[3],
            });
          }
        }
        position += length;
      }
      offset = result.nextOffset;
    }
  }
}
