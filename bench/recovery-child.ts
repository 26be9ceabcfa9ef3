/**
 * Child process of the recovery suite (bench/suites/recovery.ts), run as compiled JS with plain node:
 *
 *   node dist/bench/recovery-child.js DIRECTORY BYTES DURABILITY
 *
 * Opens a PartitionLog in DIRECTORY with DURABILITY (`none` or `interval`), appends 64 KiB batches
 * (one appender, awaiting each append, yielding to the event loop every 1 MiB) until BYTES are written, prints one JSON line on stdout
 * ({"written": bytes, "logEndOffset", "durableOffset", "syncCount", "seconds"}), then sleeps without
 * closing the log until the parent kills it with SIGKILL.
 */
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { PartitionLog } from '../src/storage/partition-log.js';
import type { Durability } from '../src/storage/sync-scheduler.js';
import { makeBatches } from './suites/append.js';

const [directory, bytesArgument, durabilityArgument] = process.argv.slice(2);
if (directory === undefined || bytesArgument === undefined || durabilityArgument === undefined) {
  process.stderr.write('usage: recovery-child DIRECTORY BYTES none|interval\n');
  process.exit(2);
}
const durability = durabilityArgument as Durability;
const totalBytes = Number(bytesArgument);
const batchBytes = 64 * 1024;
const batches = makeBatches(batchBytes, 4);

const log = await PartitionLog.open({ directory, durability });
const start = process.hrtime.bigint();
let written = 0;
for (let i = 0; written < totalBytes; i++) {
  const batch = batches[i % batches.length]!;
  await log.append(batch);
  written += batch.length;
  // Let the event loop turn every 1 MiB (as a server does between socket reads): the `interval`
  // flush timer and background fdatasync completions run while the log is written.
  if (i % 16 === 15) await yieldToEventLoop();
}
const seconds = Number(process.hrtime.bigint() - start) / 1e9;
process.stdout.write(
  `${JSON.stringify({
    written,
    logEndOffset: log.logEndOffset,
    durableOffset: log.durableOffset,
    syncCount: log.syncCount,
    seconds,
  })}\n`,
);
// Keep running (the log open, timers alive) until killed.
setInterval(() => undefined, 60_000);
