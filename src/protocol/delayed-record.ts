/**
 * Delayed records, for the client's producer and the HTTP API alike: a message with `delayMs` or
 * `deliverAt` becomes a record with the `sw-deliver-at` header (epoch ms, decimal text), sent in a
 * batch with the `delayed` attribute (a batch is delayed or not as a whole: the producer keeps one
 * queue per partition for delayed messages). The broker stores it and appends it to the topic at that
 * time (docs/PROTOCOL.md, "Delayed messages").
 */
import { InvalidArgumentError } from '../errors.js';
import type { RecordInput } from '../format/record-batch.js';
import { delayAheadMsMax } from '../limits.js';
import { deliverAtHeader } from './reserved-headers.js';

/** What a delayed send adds to a message. */
export interface DelayOptions {
  /** Deliver this many ms after the send (0 .. 10 years). */
  delayMs?: number | undefined;
  /** Deliver at this time (epoch ms); a time past delivers at once. */
  deliverAt?: number | undefined;
}

/** The due time of `message` (epoch ms), or null when it is not delayed. Throws INVALID_ARGUMENT. */
export function dueTimeOf(message: DelayOptions, nowMs: number): number | null {
  const { delayMs, deliverAt } = message;
  if (delayMs === undefined && deliverAt === undefined) return null;
  if (delayMs !== undefined && deliverAt !== undefined) {
    throw new InvalidArgumentError('a message takes delayMs or deliverAt, not both');
  }
  if (delayMs !== undefined) {
    if (!Number.isSafeInteger(delayMs) || delayMs < 0 || delayMs > delayAheadMsMax) {
      throw new InvalidArgumentError(
        `delayMs must be an integer in [0, ${delayAheadMsMax}] (10 years), got ${String(delayMs)}`,
      );
    }
    return nowMs + delayMs;
  }
  if (
    !Number.isSafeInteger(deliverAt) ||
    (deliverAt as number) < 0 ||
    (deliverAt as number) > nowMs + delayAheadMsMax
  ) {
    throw new InvalidArgumentError(
      `deliverAt must be epoch ms, an integer >= 0 at most 10 years ahead, got ${String(deliverAt)}`,
    );
  }
  return deliverAt as number;
}

/** The record of a delayed message: its headers plus `sw-deliver-at`. */
export function delayedRecord(message: RecordInput, dueMs: number): RecordInput {
  const headers = message.headers;
  const pairs: Array<readonly [string, RecordInput['value']]> =
    headers == null ? [] : Array.isArray(headers) ? [...headers] : Object.entries(headers);
  pairs.push([deliverAtHeader, String(dueMs)]);
  return { key: message.key, value: message.value, headers: pairs, timestamp: message.timestamp };
}
