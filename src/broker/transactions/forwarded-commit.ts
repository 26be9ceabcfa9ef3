/**
 * What a transaction coordinator in a cluster copies into target partitions, and how it finds its
 * copies again (docs/TRANSACTIONS.md, "In a cluster"). The commit's copies go through the service
 * term's forwarder (src/cluster/forwarding/forwarder.ts), which owns the batch header's producer
 * fields (the service's producer id, the term's fence, its sequence): the single broker's stamp in
 * those fields (transaction id, half index) cannot ride there. So each record of a copied half
 * carries the header `sw-txn: <id>:<index>` instead, and a coordinator taking over recognises what
 * was copied by scanning the targets for its service's batches (`TransactionForwarder.scan`) and
 * reading that header of their first record.
 *
 * The copy is not marked `transactional` (the produce path refuses that bit from anyone but the
 * single broker's own delivery): in a cluster the header is the mark.
 */
import { BatchBuilder, RecordCursor } from '../../format/record-batch.js';
import { crc32c as nativeCrc32c } from '../../native.js';
import { transactionStampHeader } from '../../protocol/reserved-headers.js';

/** The forwarding a coordinator term uses (a Forwarder of src/cluster/forwarding/). */
export interface TransactionForwarder {
  /** Appends `batch` (owned from now on) with acks 'all', at most once; see forwarder.ts. */
  append(
    topic: string,
    partition: number,
    batch: Uint8Array,
  ): Promise<{ baseOffset: number; lastOffset: number }>;
  /** Hands every batch of this service at or after `fromOffset` to `onBatch`; resolves with the end scanned to. */
  scan(
    topic: string,
    partition: number,
    fromOffset: number,
    onBatch: (batch: Uint8Array) => void,
  ): Promise<number>;
  /** Ends the term: every pending and later call rejects. */
  close(why: string): void;
}

const crc32cOfBytes = (bytes: Uint8Array): number => nativeCrc32c(bytes);
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Half `index` of transaction `id` as copied in a cluster: each record with `sw-txn: id:index`. */
export function stampForwardedBatch(batch: Uint8Array, id: number, index: number): Uint8Array {
  const stamp = encoder.encode(`${id}:${index}`);
  const builder = new BatchBuilder({ initialBytes: batch.length + 64 });
  const cursor = new RecordCursor(batch, 0);
  while (cursor.next()) {
    const headers: Array<readonly [string, Uint8Array | null]> = cursor.headers();
    headers.push([transactionStampHeader, stamp]);
    builder.append({ key: cursor.key(), value: cursor.value(), headers, timestamp: cursor.timestamp });
  }
  return builder.finishCopy({ crc32c: crc32cOfBytes });
}

/** The (transaction id, half index) a copied batch carries, or null (not a copy of a half). */
export function forwardedStampOf(batch: Uint8Array): { id: number; index: number } | null {
  const cursor = new RecordCursor(batch, 0);
  if (!cursor.next()) return null;
  for (const [name, value] of cursor.headers()) {
    if (name !== transactionStampHeader || value === null) continue;
    const [id, index] = decoder.decode(value).split(':').map(Number);
    if (Number.isSafeInteger(id) && Number.isSafeInteger(index)) return { id: id!, index: index! };
  }
  return null;
}
