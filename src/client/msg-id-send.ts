/**
 * The producer's side of msg-id dedup (docs/PROTOCOL.md): `send(topic, { msgId })` becomes the
 * record header `sw-msg-id`, and a PRODUCE answer with per-record positions (some record was a
 * duplicate, answered with its first copy's partition and offset) is read back for each send().
 */
import { InvalidArgumentError, SpillwayError } from '../errors.js';
import type { RecordInput } from '../format/record-batch.js';
import { checkMsgId } from '../protocol/msg-id.js';
import { msgIdHeader } from '../protocol/reserved-headers.js';

/** Per record of a batch, in batch order: where it is. */
export interface RecordPositions {
  partitions: number[];
  offsets: number[];
}

/** The record to append for a message with a msgId: its headers plus `sw-msg-id`. INVALID_ARGUMENT when bad. */
export function recordWithMsgId(message: RecordInput & { msgId?: unknown }): RecordInput {
  const msgId = checkMsgId(message.msgId, 'message msgId');
  const headers = message.headers;
  const pairs: Array<readonly [string, RecordInput['value']]> = [];
  if (headers !== undefined && headers !== null) {
    if (typeof headers !== 'object') throw new InvalidArgumentError('message headers must be an object');
    for (const pair of Array.isArray(headers) ? headers : Object.entries(headers)) {
      if (pair[0] === msgIdHeader) {
        throw new InvalidArgumentError(`message has both msgId and a ${msgIdHeader} header: give one`);
      }
      pairs.push(pair);
    }
  }
  pairs.push([msgIdHeader, msgId]);
  return { key: message.key, value: message.value, headers: pairs, timestamp: message.timestamp };
}

function isOffsetList(value: unknown, length: number): value is number[] {
  return (
    Array.isArray(value) &&
    value.length === length &&
    value.every((item) => typeof item === 'number' && Number.isSafeInteger(item) && item >= 0)
  );
}

/**
 * The per-record positions of a PRODUCE answer for a batch of `recordCount` records, or null when
 * the answer has none (record i is then at baseOffset + i). PROTOCOL_ERROR when malformed.
 */
export function recordPositionsOf(header: unknown, recordCount: number): RecordPositions | null {
  if (typeof header !== 'object' || header === null) return null;
  const { recordPartitions, recordOffsets } = header as Record<string, unknown>;
  if (recordPartitions === undefined && recordOffsets === undefined) return null;
  if (!isOffsetList(recordPartitions, recordCount) || !isOffsetList(recordOffsets, recordCount)) {
    throw new SpillwayError(
      'PROTOCOL_ERROR',
      `produce: the broker's answer has per-record positions that are not ${recordCount} integers >= 0 each`,
    );
  }
  return { partitions: recordPartitions, offsets: recordOffsets };
}
