/**
 * Internal state logs (src/broker/state/): how fast entries commit under `always` (group commit: the
 * entries of one event-loop turn share one batch, and concurrent batches share one fdatasync), and how
 * long recovery takes with many entries since the last snapshot.
 *
 * Commit rate: a KeyValueState over a PartitionLog (`always`, 64 MiB segments, no spare) in the scratch
 * directory; entries `{op:'put', key:'k<i mod 100000>', value: 93 raw bytes}` (100-byte records of
 * key and value, `bytesValues`); W writers (1 and 16), each keeping up to `windowPerWriter` commits in flight (a writer
 * awaits its oldest commit when its window is full, like a pipelined producer). Snapshots happen as
 * configured by default (every 16 MiB of changes, at least twice the last snapshot). Targets: >= 200k
 * entries/s.
 *
 * Recovery: N entries (1M; 100k quick) committed with a snapshot threshold above them (so all are
 * replayed), the log closed cleanly, then StateLog.open timed (the PartitionLog open is timed apart).
 * Target: < 1 s for 1M entries.
 */
import * as path from 'node:path';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { bytesValues, KeyValueState, keyValueCodec } from '../../src/broker/state/key-value-state.js';
import { StateLog } from '../../src/broker/state/state-log.js';
import { PartitionLog } from '../../src/storage/partition-log.js';
import type { Durability } from '../../src/storage/sync-scheduler.js';
import { type BenchContext, type BenchRow, type BenchSuite, median } from '../report.js';

const suiteName = 'state';
const keySpace = 100_000;
/** 93 bytes: with a key of 'k' and up to 5 digits, entries of 100 bytes. */
const value = new Uint8Array(93).fill(0x76);
const codec = keyValueCodec(bytesValues);

interface Parameters {
  runs: number;
  durationMs: number;
  windowPerWriter: number;
  recoveryEntries: number;
}
const fullParameters: Parameters = {
  runs: 3,
  durationMs: 3000,
  windowPerWriter: 1024,
  recoveryEntries: 1_000_000,
};
const quickParameters: Parameters = {
  runs: 1,
  durationMs: 300,
  windowPerWriter: 1024,
  recoveryEntries: 100_000,
};

let directoryNumber = 0;

async function openLog(context: BenchContext, durability: Durability): Promise<PartitionLog> {
  return PartitionLog.open({
    directory: path.join(context.scratchDir, `state-${directoryNumber++}`),
    durability,
    segmentBytes: 64 * 1024 * 1024,
    spareSegment: false,
  });
}

interface CommitRun {
  entries: number;
  seconds: number;
  syncs: number;
  batches: number;
  snapshots: number;
}

async function commitRun(context: BenchContext, writers: number, parameters: Parameters): Promise<CommitRun> {
  const log = await openLog(context, 'always');
  const machine = new KeyValueState<Uint8Array>();
  const state = StateLog.open({ name: 'bench/0', log, machine, codec });
  const syncsBefore = log.syncCount;
  let committed = 0;
  let next = 0;
  const startedAt = performance.now();
  const deadline = startedAt + parameters.durationMs;
  const writer = async (): Promise<void> => {
    const window: Promise<number>[] = [];
    while (performance.now() < deadline) {
      const key = `k${next++ % keySpace}`;
      window.push(
        state.commit({ op: 'put', key, value }).then((offset) => {
          committed++;
          return offset;
        }),
      );
      if (window.length >= parameters.windowPerWriter) await window.shift();
    }
    await Promise.all(window);
  };
  await Promise.all(Array.from({ length: writers }, () => writer()));
  const seconds = (performance.now() - startedAt) / 1000;
  const stats = state.stats;
  const result: CommitRun = {
    entries: committed,
    seconds,
    syncs: log.syncCount - syncsBefore,
    batches: stats.appendedBatches,
    snapshots: stats.snapshotsWritten,
  };
  await state.close();
  await log.close();
  return result;
}

interface RecoveryRun {
  logOpenMs: number;
  stateOpenMs: number;
  changesReplayed: number;
  logBytes: number;
}

async function recoveryRun(context: BenchContext, entries: number): Promise<RecoveryRun> {
  let log = await openLog(context, 'none');
  const directory = log.directory;
  const writeState = StateLog.open({
    name: 'bench/0',
    log,
    machine: new KeyValueState<Uint8Array>(),
    codec,
    snapshotBytesMin: 1 << 30,
  });
  for (let written = 0; written < entries; ) {
    const commits: Promise<number>[] = [];
    for (let i = 0; i < 10_000 && written < entries; i++, written++) {
      commits.push(writeState.commit({ op: 'put', key: `k${written % keySpace}`, value }));
    }
    await Promise.all(commits);
  }
  await writeState.close();
  const logBytes = log.sizeBytes;
  await log.close();
  await yieldToEventLoop();
  const logStartedAt = performance.now();
  log = await PartitionLog.open({
    directory,
    durability: 'none',
    segmentBytes: 64 * 1024 * 1024,
    spareSegment: false,
  });
  const stateStartedAt = performance.now();
  const machine = new KeyValueState<Uint8Array>();
  const state = StateLog.open({ name: 'bench/0', log, machine, codec, snapshotBytesMin: 1 << 30 });
  const done = performance.now();
  if (machine.size !== Math.min(entries, keySpace)) {
    throw new Error(`recovered ${machine.size} keys, expected ${Math.min(entries, keySpace)}`);
  }
  const result: RecoveryRun = {
    logOpenMs: stateStartedAt - logStartedAt,
    stateOpenMs: done - stateStartedAt,
    changesReplayed: state.recovery.changesReplayed,
    logBytes,
  };
  await state.close();
  await log.close();
  return result;
}

export const suite: BenchSuite = {
  name: suiteName,
  async run(context: BenchContext): Promise<BenchRow[]> {
    const parameters = context.quick ? quickParameters : fullParameters;
    const rows: BenchRow[] = [];
    for (const writers of [1, 16]) {
      const runs: CommitRun[] = [];
      for (let i = 0; i < parameters.runs; i++) {
        await yieldToEventLoop();
        const run = await commitRun(context, writers, parameters);
        runs.push(run);
        context.log(
          `${writers} writer(s): ${run.entries} entries in ${run.seconds.toFixed(2)} s, ${run.batches} batches, ${run.syncs} fdatasync, ${run.snapshots} snapshots`,
        );
      }
      const rates = runs.map((run) => run.entries / run.seconds);
      const perSync = runs.map((run) => run.entries / Math.max(1, run.syncs));
      rows.push({
        suite: suiteName,
        name: `commit, always, 100 B entries, ${writers} writer(s) x ${parameters.windowPerWriter} in flight`,
        value: Math.round(median(rates)),
        unit: 'entries/s',
        detail: `runs ${rates.map((rate) => Math.round(rate)).join('/')}; entries per fdatasync ${Math.round(median(perSync))}; snapshots ${runs.map((run) => run.snapshots).join('/')}; target >= 200000`,
      });
    }
    const recoveries: RecoveryRun[] = [];
    for (let i = 0; i < parameters.runs; i++) {
      await yieldToEventLoop();
      const run = await recoveryRun(context, parameters.recoveryEntries);
      recoveries.push(run);
      context.log(
        `recovery: ${run.changesReplayed} changes (${(run.logBytes / 1e6).toFixed(1)} MB) replayed in ${run.stateOpenMs.toFixed(0)} ms; log open ${run.logOpenMs.toFixed(0)} ms`,
      );
    }
    const stateMs = recoveries.map((run) => run.stateOpenMs);
    rows.push({
      suite: suiteName,
      name: `recovery, ${parameters.recoveryEntries} entries since the last snapshot`,
      value: Math.round(median(stateMs)),
      unit: 'ms',
      detail: `StateLog.open (scan for snapshots + replay), runs ${stateMs.map((ms) => Math.round(ms)).join('/')}; log ${(recoveries[0]!.logBytes / 1e6).toFixed(1)} MB; PartitionLog.open (clean) ${Math.round(median(recoveries.map((run) => run.logOpenMs)))} ms; target < 1000 ms for 1M`,
    });
    return rows;
  },
};
