/**
 * The msgId of a message (msg-id dedup, docs/PROTOCOL.md): a non-empty string of at most
 * msgIdBytesMax UTF-8 bytes, carried as the record header `sw-msg-id` (reserved-headers.ts). The
 * client, the HTTP API and the broker check it with these functions, so all three say the same.
 */
import { isUtf8 } from 'node:buffer';
import { InvalidArgumentError, InvalidBatchError } from '../errors.js';
import { msgIdBytesMax } from '../limits.js';

/** Checks a msgId given by a caller (`label` names it in the error); returns it. INVALID_ARGUMENT when bad. */
export function checkMsgId(value: unknown, label: string): string {
  if (typeof value !== 'string') {
    throw new InvalidArgumentError(
      `${label} must be a string, got ${value === null ? 'null' : typeof value}`,
    );
  }
  const bytes = Buffer.byteLength(value, 'utf8');
  if (bytes === 0 || bytes > msgIdBytesMax) {
    throw new InvalidArgumentError(`${label} must be 1 to ${msgIdBytesMax} UTF-8 bytes, got ${bytes}`);
  }
  return value;
}

/**
 * The msgId in a record header value as the broker reads it from a batch: INVALID_BATCH when it is
 * null, empty, longer than msgIdBytesMax or not UTF-8.
 */
export function msgIdOfHeaderValue(value: Uint8Array | null, record: number): string {
  if (value === null || value.length === 0 || value.length > msgIdBytesMax || !isUtf8(value)) {
    throw new InvalidBatchError(
      `record ${record}: header sw-msg-id must be 1 to ${msgIdBytesMax} bytes of UTF-8, got ${value === null ? 'null' : `${value.length} bytes${value.length > 0 && value.length <= msgIdBytesMax ? ' (not UTF-8)' : ''}`}`,
    );
  }
  return Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('utf8');
}
