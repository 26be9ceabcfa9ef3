/**
 * Child process of crash.test.ts, run as plain `node dist/test/storage/crash-child.js` (compiled by
 * tsc) and killed with SIGKILL at a random moment by the parent.
 *
 *   node crash-child.js <directory> <durability> <firstBatch> <segmentBytes>
 *
 * Opens the PartitionLog in <directory> (recovering whatever the previous kill left), prints one line
 * `{"opened":{"logEndOffset":E,"recovery":{...}}}`, then runs `appenderCount` loops that append
 * without awaiting each other, batch numbers <firstBatch>, <firstBatch>+1, ... Each acknowledged
 * append prints `{"batch":N,"baseOffset":B,"lastOffset":L}`: the parent then holds the log to it.
 * stdout is a pipe, which Node writes synchronously on Linux, so a printed line was acknowledged
 * before any kill. It never closes the log: every run ends with SIGKILL.
 *
 * The content of batch N is a pure function of N (`crashBatch`), so the parent can check every batch
 * it finds, acknowledged or not, byte for byte.
 */
import { pathToFileURL } from 'node:url';
import { encodeBatch, type RecordInput } from '../../src/format/record-batch.js';
import { PartitionLog } from '../../src/storage/partition-log.js';
import type { Durability } from '../../src/storage/sync-scheduler.js';

export const crashAppenderCount = 4;
export const crashRecordCountMax = 50;
/** Checkpoints move during a run, so recovery also meets sealed segments before the recovery point. */
export const crashCheckpointIntervalMs = 25;
const paddingBytesMax = 200;
const timestampBase = 1_700_000_000_000;

/** A 32-bit integer hash (lowbias32): batch number to pseudo-random shape. */
function hash32(value: number): number {
  let x = value >>> 0;
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  x ^= x >>> 16;
  return x >>> 0;
}

/** Record count (1..50) of batch `batch`. */
export function crashRecordCount(batch: number): number {
  return 1 + (hash32(batch) % crashRecordCountMax);
}

/** Value of record `index` of batch `batch`: `<batch>/<index>/` and a padding of 0..200 bytes. */
export function crashRecordValue(batch: number, index: number): string {
  const paddingBytes = hash32(batch * 64 + index + 1) % (paddingBytesMax + 1);
  return `${batch}/${index}/${'p'.repeat(paddingBytes)}`;
}

/** Key of every record of batch `batch`: how a reader finds which batch it is looking at. */
export function crashRecordKey(batch: number): string {
  return `b${batch}`;
}

/** The batch the child appends as number `batch` (baseOffset 0, as a producer sends it). */
export function crashBatch(batch: number): Uint8Array {
  const count = crashRecordCount(batch);
  const records: RecordInput[] = [];
  for (let i = 0; i < count; i++) {
    records.push({
      key: crashRecordKey(batch),
      value: crashRecordValue(batch, i),
      timestamp: timestampBase + batch,
    });
  }
  return encodeBatch(records);
}

export interface CrashAck {
  batch: number;
  baseOffset: number;
  lastOffset: number;
}

async function main(argv: string[]): Promise<void> {
  const [directory, durability, firstBatchText, segmentBytesText] = argv;
  if (!directory || !durability || !firstBatchText || !segmentBytesText) {
    throw new Error('usage: crash-child.js <directory> <durability> <firstBatch> <segmentBytes>');
  }
  const log = await PartitionLog.open({
    directory,
    durability: durability as Durability,
    segmentBytes: Number(segmentBytesText),
    checkpointIntervalMs: crashCheckpointIntervalMs,
  });
  process.stdout.write(
    `${JSON.stringify({ opened: { logEndOffset: log.logEndOffset, recovery: log.recovery } })}\n`,
  );
  let next = Number(firstBatchText);
  const appender = async (): Promise<void> => {
    for (;;) {
      const batch = next++;
      const result = await log.append(crashBatch(batch));
      const ack: CrashAck = { batch, baseOffset: result.baseOffset, lastOffset: result.lastOffset };
      process.stdout.write(`${JSON.stringify(ack)}\n`);
      // With `none` an append resolves at once: yield so that timers (checkpoints) still run.
      if (durability !== 'always') await new Promise((resolve) => setImmediate(resolve));
    }
  };
  await Promise.all(Array.from({ length: crashAppenderCount }, appender));
}

const entry = process.argv[1];
if (entry !== undefined && import.meta.url === pathToFileURL(entry).href) {
  main(process.argv.slice(2)).catch((error: unknown) => {
    process.stderr.write(`crash-child failed: ${error instanceof Error ? error.stack : String(error)}\n`);
    process.exit(1);
  });
}
