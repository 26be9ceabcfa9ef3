/**
 * Headers of the queue requests (docs/PROTOCOL.md, "Queues"), parsed and validated here for both the
 * broker (dispatch.ts) and the client (which builds them):
 *
 *   QUEUE_RECEIVE (50)  { group, topic, mode: 'shared' | 'key_shared', max, waitMs, maxBytes?,
 *                         ackTimeoutMs?, maxDeliveries?, retryBackoffMs?, deadLetterTopic? }
 *                       -> { partitions: [{ partition, bytes, deliveries: [offset, deliveryCount, ...] }] }
 *                          body: each partition's batches back to back, `bytes` of them, in that order
 *   QUEUE_ACK (51)      { group, topic, partitions: [{ partition, ranges: [from, to, ...] }] }
 *                       or { group, receipts: [...] }                    -> { settled, ignored }
 *   QUEUE_NACK (52)     { group, topic, partitions: [{ partition, offsets: [...] }], delayMs?, error? }
 *                       or { group, receipts: [...], delayMs?, error? }   -> { settled, ignored }
 *   QUEUE_DESCRIBE (53) { group? }                                        -> { groups: [...] }
 */
import { InvalidArgumentError } from '../errors.js';
import { partitionIndexMax, queueSettleOffsetsMax, topicNameLengthMax } from '../limits.js';
import { asFields, integerField, stringField } from './messages.js';
import type { NackSettings, QueueMode, ReceiveRequest } from './queue-api.js';

export const queueGroupNameLengthMax = 255;

export interface ReceiveResponsePartition {
  partition: number;
  bytes: number;
  /** Flat [offset, deliveryCount] pairs. */
  deliveries: number[];
}

export interface AckByRanges {
  group: string;
  topic: string;
  partitions: Array<{ partition: number; ranges: number[] }>;
}

export interface NackByOffsets extends NackSettings {
  group: string;
  topic: string;
  partitions: Array<{ partition: number; offsets: number[] }>;
}

export interface ByReceipts extends NackSettings {
  group: string;
  receipts: string[];
}

function isOffset(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

export function parseMode(value: unknown): QueueMode {
  if (value === 'shared' || value === 'key_shared') return value;
  throw new InvalidArgumentError(`mode must be 'shared' or 'key_shared', got ${JSON.stringify(value)}`);
}

export function parseReceive(header: unknown): ReceiveRequest {
  const fields = asFields(header);
  const request: ReceiveRequest = {
    group: stringField(fields, 'group', queueGroupNameLengthMax),
    topic: stringField(fields, 'topic', topicNameLengthMax),
    mode: parseMode(fields['mode']),
    max: integerField(fields, 'max', 1, Number.MAX_SAFE_INTEGER),
    waitMs: integerField(fields, 'waitMs', 0, Number.MAX_SAFE_INTEGER),
  };
  for (const name of ['maxBytes', 'ackTimeoutMs', 'maxDeliveries'] as const) {
    if (fields[name] !== undefined) request[name] = integerField(fields, name, 0, Number.MAX_SAFE_INTEGER);
  }
  if (fields['retryBackoffMs'] !== undefined) {
    const steps = fields['retryBackoffMs'];
    if (!Array.isArray(steps)) throw new InvalidArgumentError('retryBackoffMs must be a list of delays');
    request.retryBackoffMs = steps as number[];
  }
  if (fields['deadLetterTopic'] !== undefined) {
    request.deadLetterTopic = stringField(fields, 'deadLetterTopic', topicNameLengthMax);
  }
  return request;
}

function parseNackSettings(fields: Record<string, unknown>): NackSettings {
  const settings: NackSettings = {};
  if (fields['delayMs'] !== undefined)
    settings.delayMs = integerField(fields, 'delayMs', 0, Number.MAX_SAFE_INTEGER);
  if (fields['error'] !== undefined) {
    if (typeof fields['error'] !== 'string') throw new InvalidArgumentError('error must be a string');
    settings.error = fields['error'];
  }
  return settings;
}

/** Receipts of an ACK / NACK (or null when the request settles by offsets). */
export function parseReceipts(fields: Record<string, unknown>): string[] | null {
  const receipts = fields['receipts'];
  if (receipts === undefined) return null;
  if (
    !Array.isArray(receipts) ||
    receipts.length === 0 ||
    receipts.length > queueSettleOffsetsMax ||
    !receipts.every((receipt) => typeof receipt === 'string' && receipt.length <= 128)
  ) {
    throw new InvalidArgumentError(
      `receipts must be a list of 1 to ${queueSettleOffsetsMax} receipt strings`,
    );
  }
  return receipts as string[];
}

function partitionsOf(fields: Record<string, unknown>): Array<Record<string, unknown>> {
  const partitions = fields['partitions'];
  if (!Array.isArray(partitions) || partitions.length > partitionIndexMax + 1) {
    throw new InvalidArgumentError('partitions must be a list');
  }
  return partitions.map((partition) => asFields(partition));
}

export function parseAck(header: unknown): AckByRanges | ByReceipts {
  const fields = asFields(header);
  const group = stringField(fields, 'group', queueGroupNameLengthMax);
  const receipts = parseReceipts(fields);
  if (receipts !== null) return { group, receipts };
  return {
    group,
    topic: stringField(fields, 'topic', topicNameLengthMax),
    partitions: partitionsOf(fields).map((partition) => {
      const ranges = partition['ranges'];
      if (!Array.isArray(ranges) || ranges.length % 2 !== 0) {
        throw new InvalidArgumentError('ranges must be a flat list of [from, to) pairs');
      }
      for (let i = 0; i < ranges.length; i += 2) {
        if (!isOffset(ranges[i]) || !isOffset(ranges[i + 1]) || ranges[i] > ranges[i + 1]) {
          throw new InvalidArgumentError(`ranges: pair ${i / 2} is not offsets with from <= to`);
        }
      }
      return {
        partition: integerField(partition, 'partition', 0, partitionIndexMax),
        ranges: ranges as number[],
      };
    }),
  };
}

export function parseNack(header: unknown): NackByOffsets | ByReceipts {
  const fields = asFields(header);
  const group = stringField(fields, 'group', queueGroupNameLengthMax);
  const settings = parseNackSettings(fields);
  const receipts = parseReceipts(fields);
  if (receipts !== null) return { group, receipts, ...settings };
  return {
    group,
    topic: stringField(fields, 'topic', topicNameLengthMax),
    ...settings,
    partitions: partitionsOf(fields).map((partition) => {
      const offsets = partition['offsets'];
      if (!Array.isArray(offsets) || !offsets.every(isOffset)) {
        throw new InvalidArgumentError('offsets must be a list of offsets');
      }
      return {
        partition: integerField(partition, 'partition', 0, partitionIndexMax),
        offsets: offsets as number[],
      };
    }),
  };
}

export function parseDescribeQueues(header: unknown): { group?: string } {
  const fields = asFields(header ?? {});
  return fields['group'] === undefined
    ? {}
    : { group: stringField(fields, 'group', queueGroupNameLengthMax) };
}
