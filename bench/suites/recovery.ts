/**
 * Time to reopen a partition log after kill -9. A child process (dist/bench/recovery-child.js,
 * plain node) writes a 1 GiB log (128 MiB in quick mode) of 64 KiB batches in the scratch
 * directory with durability `interval` (default 200 ms) or `none` and reports when done; the parent
 * SIGKILLs it (it is sleeping with the log open, never closed) and times `PartitionLog.open` on the
 * directory: the unclean recovery (find segments, scan and CRC32C-verify everything past the
 * recovery point, fdatasync what was not synced, zero the tail, write the checkpoint). Then it closes
 * the log cleanly and times a clean reopen (indexes trusted, nothing scanned).
 *
 * The page cache survives the kill (only the process died), so the scan reads memory: this is the
 * process-crash case, not power loss. Dirty page-cache bytes at the time of the open are reported
 * (the open's fdatasync has to write them). Each figure is the median of 3 whole write+kill+open
 * cycles per durability (1 in quick mode).
 *
 * Start-up of a data directory (`--recovery-gib N`, default 1 GiB, 256 MiB quick): 8 partition logs
 * of 64 KiB batches written and closed cleanly, then opened one after the other (as the broker
 * does) three ways: with their valid checkpoints (indexes trusted), without any checkpoint (every
 * segment scanned and CRC-checked: the checkpoint-less open, target < 10 s for 10 GiB) from the page
 * cache, and the same with the files dropped from the page cache first (posix_fadvise DONTNEED
 * after a sync: read from the disk).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  unlinkSync,
} from 'node:fs';
import * as path from 'node:path';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { fadvise } from '../../src/native.js';
import type { RecoveryReport } from '../../src/storage/log-loader.js';
import { recoveryCheckpointFileName } from '../../src/storage/log-loader.js';
import { PartitionLog } from '../../src/storage/partition-log.js';
import { findRepositoryRoot } from '../harness.js';
import { type BenchContext, type BenchRow, type BenchSuite, median } from '../report.js';
import { collectGarbage, makeBatches } from './append.js';

const dataDirPartitions = 8;

/** Writes `bytes` spread over `dataDirPartitions` logs in `root` (64 KiB batches), closed cleanly. */
async function writeDataDir(root: string, bytes: number): Promise<string[]> {
  const batches = makeBatches(64 * 1024, 4);
  const directories: string[] = [];
  for (let p = 0; p < dataDirPartitions; p++) {
    const directory = path.join(root, String(p));
    directories.push(directory);
    const log = await PartitionLog.open({ directory, durability: 'none', spareSegment: false });
    let written = 0;
    for (let i = 0; written < bytes / dataDirPartitions; i++) {
      const batch = batches[i % batches.length]!;
      await log.append(batch);
      written += batch.length;
      if (i % 64 === 63) await yieldToEventLoop();
    }
    await log.close();
  }
  return directories;
}

/** Opens every log of `directories` one after the other, closes them; returns ms and bytes verified. */
async function openAll(
  directories: string[],
): Promise<{ ms: number; bytesVerified: number; scanned: number }> {
  const start = performance.now();
  const logs: PartitionLog[] = [];
  for (const directory of directories) logs.push(await PartitionLog.open({ directory, durability: 'none' }));
  const ms = performance.now() - start;
  let bytesVerified = 0;
  let scanned = 0;
  for (const log of logs) {
    bytesVerified += log.recovery.bytesVerified;
    scanned += log.recovery.segmentsScanned;
    await log.close();
  }
  return { ms, bytesVerified, scanned };
}

function removeCheckpoints(directories: string[]): void {
  for (const directory of directories) unlinkSync(path.join(directory, recoveryCheckpointFileName));
}

/** Drops the data files from the page cache (they are clean after a close): the next read hits the disk. */
function dropFromPageCache(directories: string[]): void {
  for (const directory of directories) {
    for (const name of readdirSync(directory)) {
      const fd = openSync(path.join(directory, name), 'r');
      try {
        fadvise(fd, 0, 0, 'dontneed');
      } finally {
        closeSync(fd);
      }
    }
  }
}

const suiteName = 'recovery';
const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const childTimeoutMs = 120_000;

interface Parameters {
  cycles: number;
  logBytes: number;
}

const fullParameters: Parameters = { cycles: 3, logBytes: 1 * GiB };
const quickParameters: Parameters = { cycles: 1, logBytes: 128 * MiB };

interface ChildReport {
  written: number;
  logEndOffset: number;
  durableOffset: number;
  syncCount: number;
  seconds: number;
}

interface Cycle {
  child: ChildReport;
  dirtyMegabytes: number;
  uncleanOpenMs: number;
  report: RecoveryReport;
  recoveredEndOffset: number;
  cleanOpenMs: number;
  cleanReport: RecoveryReport;
}

function childScript(): string {
  const script = path.join(findRepositoryRoot(), 'dist', 'bench', 'recovery-child.js');
  if (!existsSync(script)) throw new Error(`${script} is missing: build first (npx tsc -p tsconfig.json)`);
  return script;
}

/** Dirty + Writeback page-cache bytes (MB) from /proc/meminfo, or -1 where unavailable. */
function dirtyMegabytes(): number {
  try {
    const info = readFileSync('/proc/meminfo', 'utf8');
    const kilobytes = (field: string): number =>
      Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(info)?.[1] ?? 0);
    return ((kilobytes('Dirty') + kilobytes('Writeback')) * 1024) / 1e6;
  } catch {
    return -1;
  }
}

/** Starts the child, resolves with its report once it has written everything (it keeps running). */
function writeInChild(
  script: string,
  directory: string,
  bytes: number,
  durability: 'none' | 'interval',
): { child: ChildProcess; done: Promise<ChildReport> } {
  const child = spawn(process.execPath, [script, directory, String(bytes), durability], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const done = new Promise<ChildReport>((resolve, reject) => {
    let output = '';
    const timer = setTimeout(
      () => reject(new Error(`child did not report within ${childTimeoutMs} ms`)),
      childTimeoutMs,
    );
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (chunk: string) => {
      output += chunk;
      const newline = output.indexOf('\n');
      if (newline < 0) return;
      clearTimeout(timer);
      try {
        resolve(JSON.parse(output.slice(0, newline)) as ChildReport);
      } catch (error) {
        reject(error);
      }
    });
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`child exited (code ${code}, signal ${signal}) before reporting`));
    });
  });
  return { child, done };
}

function killAndWait(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
}

async function cycle(
  script: string,
  directory: string,
  bytes: number,
  durability: 'none' | 'interval',
): Promise<Cycle> {
  mkdirSync(directory, { recursive: true });
  const { child, done } = writeInChild(script, directory, bytes, durability);
  let report: ChildReport;
  try {
    report = await done;
  } finally {
    await killAndWait(child);
  }
  const dirty = dirtyMegabytes();

  let start = performance.now();
  const recovered = await PartitionLog.open({ directory, durability });
  const uncleanOpenMs = performance.now() - start;
  const recoveredEndOffset = recovered.logEndOffset;
  const recoveryReport = recovered.recovery;
  await recovered.close();

  start = performance.now();
  const reopened = await PartitionLog.open({ directory, durability });
  const cleanOpenMs = performance.now() - start;
  const cleanReport = reopened.recovery;
  await reopened.close();
  rmSync(directory, { recursive: true, force: true });
  await collectGarbage(); // unmap the deleted segments now, not at some later collection
  return {
    child: report,
    dirtyMegabytes: dirty,
    uncleanOpenMs,
    report: recoveryReport,
    recoveredEndOffset,
    cleanOpenMs,
    cleanReport,
  };
}

function formatMs(value: number): string {
  return value >= 100 ? Math.round(value).toString() : value.toPrecision(3);
}

function spread(values: readonly number[]): string {
  if (values.length === 1) return '1 cycle';
  return `median of ${values.length} cycles (${formatMs(Math.min(...values))}–${formatMs(Math.max(...values))})`;
}

function round(value: number, digits: number): number {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}

export const suite: BenchSuite = {
  name: suiteName,
  async run(context: BenchContext): Promise<BenchRow[]> {
    const parameters = context.quick ? quickParameters : fullParameters;
    const script = childScript();
    const size =
      parameters.logBytes >= GiB ? `${parameters.logBytes / GiB} GiB` : `${parameters.logBytes / MiB} MiB`;
    const rows: BenchRow[] = [];
    const row = (name: string, value: number, unit: string, detail: string): void => {
      rows.push({ suite: suiteName, name, value, unit, detail });
    };
    let cycleNumber = 0;
    for (const durability of ['interval', 'none'] as const) {
      const cycles: Cycle[] = [];
      for (let i = 0; i < parameters.cycles; i++) {
        await yieldToEventLoop();
        const directory = path.join(context.scratchDir, `log-${cycleNumber++}`);
        const result = await cycle(script, directory, parameters.logBytes, durability);
        if (result.recoveredEndOffset !== result.child.logEndOffset) {
          // The page cache survives a process kill: every acknowledged batch must still be there.
          throw new Error(
            `recovered log ends at ${result.recoveredEndOffset}, the child had written up to ${result.child.logEndOffset}`,
          );
        }
        cycles.push(result);
        context.log(
          `${durability}: cycle ${i + 1}/${parameters.cycles}: child wrote ${size} in ${result.child.seconds.toFixed(2)} s ` +
            `(durable ${result.child.durableOffset}/${result.child.logEndOffset} offsets, ${result.child.syncCount} syncs), ` +
            `${Math.round(result.dirtyMegabytes)} MB dirty; unclean open ${formatMs(result.uncleanOpenMs)} ms ` +
            `(loadLog ${formatMs(result.report.durationMs)} ms, ${result.report.segmentsScanned} segments scanned, ` +
            `${result.report.bytesVerified} bytes verified); clean reopen ${formatMs(result.cleanOpenMs)} ms`,
        );
      }
      const unclean = cycles.map((c) => c.uncleanOpenMs);
      const load = cycles.map((c) => c.report.durationMs);
      const clean = cycles.map((c) => c.cleanOpenMs);
      const last = cycles[cycles.length - 1]!.report;
      const label = durability === 'interval' ? 'interval (200 ms)' : 'none';
      const join = (values: number[]): string => values.join('/');
      row(
        `reopen after kill -9, ${size} log, ${label}`,
        round(median(unclean), 1),
        'ms',
        `PartitionLog.open, ${spread(unclean)}; segmentsScanned ${join(cycles.map((c) => c.report.segmentsScanned))}, ` +
          `bytesVerified ${join(cycles.map((c) => c.report.bytesVerified))}, recoveryPoint ${join(cycles.map((c) => c.report.recoveryPoint))}, ` +
          `segmentCount ${last.segmentCount}, truncation ${cycles.some((c) => c.report.truncation !== null) ? 'yes' : 'none'}, ` +
          `system-wide Dirty+Writeback at open ${join(cycles.map((c) => Math.round(c.dirtyMegabytes)))} MB; target < 1000 ms`,
      );
      row(
        `reopen after kill -9, ${size} log, ${label}: scan + CRC32C part`,
        round(median(load), 1),
        'ms',
        `recovery.durationMs (loadLog: list, map, scan, verify, rebuild indexes), ${spread(load)}; ` +
          `the rest of the open is fdatasync of the unsynced segments, zeroing the tail, the checkpoint`,
      );
      row(
        `clean reopen, ${size} log, ${label}`,
        round(median(clean), 1),
        'ms',
        `after a clean close of the recovered log, ${spread(clean)}; segmentsScanned ` +
          `${join(cycles.map((c) => c.cleanReport.segmentsScanned))}, indexes rebuilt ${join(cycles.map((c) => c.cleanReport.indexesRebuilt.length))}`,
      );
    }
    const dataBytes = context.recoveryDataBytes ?? (context.quick ? GiB / 4 : GiB);
    const dataSize =
      dataBytes >= GiB
        ? `${(dataBytes / GiB).toFixed(dataBytes % GiB === 0 ? 0 : 2)} GiB`
        : `${Math.round(dataBytes / MiB)} MiB`;
    const root = path.join(context.scratchDir, 'data-dir');
    context.log(`writing a ${dataSize} data directory (${dataDirPartitions} partition logs)`);
    const directories = await writeDataDir(root, dataBytes);
    await collectGarbage();
    const withCheckpoint = await openAll(directories);
    removeCheckpoints(directories);
    const warm = await openAll(directories);
    removeCheckpoints(directories);
    dropFromPageCache(directories);
    const cold = await openAll(directories);
    context.log(
      `open of ${dataSize}: with checkpoints ${formatMs(withCheckpoint.ms)} ms; without, page cache ${formatMs(warm.ms)} ms ` +
        `(${warm.bytesVerified} bytes CRC-checked), from disk ${formatMs(cold.ms)} ms`,
    );
    const gbPerSecond = (bytes: number, ms: number): string => (bytes / 1e9 / (ms / 1000)).toFixed(2);
    row(
      `open ${dataSize} data dir, valid checkpoints`,
      round(withCheckpoint.ms, 1),
      'ms',
      `${dataDirPartitions} partition logs opened one after the other, clean shutdown: indexes trusted, ${withCheckpoint.scanned} segments scanned`,
    );
    row(
      `open ${dataSize} data dir, no checkpoint (page cache)`,
      round(warm.ms, 1),
      'ms',
      `every segment scanned and CRC32C-checked (${warm.scanned} segments, ${warm.bytesVerified} bytes, ${gbPerSecond(warm.bytesVerified, warm.ms)} GB/s); target < 10 s for 10 GiB`,
    );
    row(
      `open ${dataSize} data dir, no checkpoint (from disk)`,
      round(cold.ms, 1),
      'ms',
      `the same after posix_fadvise DONTNEED on every file (${gbPerSecond(cold.bytesVerified, cold.ms)} GB/s); target < 10 s for 10 GiB`,
    );
    rmSync(root, { recursive: true, force: true });
    await collectGarbage();
    return rows;
  },
};
