/**
 * StateLog: commits, group commit, snapshots, recovery (snapshot + replay), segment deletion behind
 * snapshots, fallback from a damaged or cut-short snapshot, failure and backpressure. A model test
 * runs random operation sequences against a plain Map on both stores (MemoryLog and PartitionLog).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import {
  type KeyValueEntry,
  KeyValueState,
  keyValueCodec,
  msgpackValues,
} from '../../../src/broker/state/key-value-state.js';
import { StateLog } from '../../../src/broker/state/state-log.js';
import { SpillwayError, StorageIoError } from '../../../src/errors.js';
import { BatchAttributes, BatchHeader, batchLengthAt } from '../../../src/format/batch-header.js';
import type { LogStore } from '../../../src/storage/log-store.js';
import { MemoryLog } from '../../../src/storage/memory-log.js';
import { PartitionLog } from '../../../src/storage/partition-log.js';

type Entry = KeyValueEntry<string>;
const codec = keyValueCodec<string>(
  msgpackValues((value) => {
    if (typeof value !== 'string') throw new Error('value must be a string');
    return value;
  }),
);

const directories: string[] = [];
afterEach(() => {
  for (const directory of directories.splice(0)) rmSync(directory, { recursive: true, force: true });
});
function temporaryDirectory(): string {
  const directory = mkdtempSync(join(tmpdir(), 'spillway-state-log-'));
  directories.push(directory);
  return directory;
}

function openState(log: LogStore, snapshotBytesMin = 1 << 20) {
  const machine = new KeyValueState<string>();
  const state = StateLog.open<Entry>({
    name: 'test/0',
    log,
    machine,
    codec,
    snapshotBytesMin,
    batchBytesMax: 4096,
  });
  return { machine, state };
}

function contents(machine: KeyValueState<string>): Record<string, string> {
  return Object.fromEntries([...machine.view()].sort(([a], [b]) => (a < b ? -1 : 1)));
}

async function openFileLog(directory: string): Promise<PartitionLog> {
  return PartitionLog.open({ directory, durability: 'always', segmentBytes: 64 * 1024, spareSegment: false });
}

/** Offsets and positions of the batches of segment file `path` (after a clean close: trimmed). */
function batchesOfFile(path: string): Array<{ position: number; control: boolean; baseOffset: number }> {
  const bytes = readFileSync(path);
  const found: Array<{ position: number; control: boolean; baseOffset: number }> = [];
  for (let position = 0; position + BatchHeader.size <= bytes.length; ) {
    const length = batchLengthAt(bytes, position);
    if (length === 0) break;
    const attributes = bytes.readUInt16LE(position + BatchHeader.attributes);
    found.push({
      position,
      control: (attributes & BatchAttributes.control) !== 0,
      baseOffset: Number(bytes.readBigInt64LE(position)),
    });
    position += length;
  }
  return found;
}

describe('StateLog', () => {
  it('applies committed entries in order and resolves them with their offsets', async () => {
    const { machine, state } = openState(new MemoryLog());
    const offsets = await Promise.all([
      state.commit({ op: 'put', key: 'a', value: '1' }),
      state.commit({ op: 'put', key: 'b', value: '2' }),
      state.commit({ op: 'delete', key: 'a' }),
    ]);
    expect(offsets).toEqual([0, 1, 2]);
    expect(contents(machine)).toEqual({ b: '2' });
    expect(state.stats).toMatchObject({ committedEntries: 3, appendedBatches: 1 });
  });

  it('groups the commits of one turn into few batches and one fdatasync with always', async () => {
    const directory = temporaryDirectory();
    const log = await openFileLog(directory);
    const { machine, state } = openState(log);
    const syncsBefore = log.syncCount;
    const commits = Array.from({ length: 5000 }, (_, i) =>
      state.commit({ op: 'put', key: `k${i}`, value: 'v'.repeat(60) }),
    );
    await Promise.all(commits);
    expect(machine.size).toBe(5000);
    // 5,000 entries of ~80 bytes in 4 KiB batches: about 100 batches, not 5,000; a handful of syncs.
    expect(state.stats.appendedBatches).toBeLessThan(200);
    expect(log.syncCount - syncsBefore).toBeLessThan(20);
    await state.close();
    await log.close();
  });

  it('recovers from snapshot + replay after reopening, and deletes segments behind the older snapshot', async () => {
    const directory = temporaryDirectory();
    let log = await openFileLog(directory);
    let opened = openState(log, 8 * 1024);
    const model = new Map<string, string>();
    for (let round = 0; round < 40; round++) {
      const commits: Promise<number>[] = [];
      for (let i = 0; i < 50; i++) {
        const key = `k${(round * 7 + i) % 300}`;
        const value = `${round}-${i}-${'x'.repeat(40)}`;
        model.set(key, value);
        commits.push(opened.state.commit({ op: 'put', key, value }));
      }
      await Promise.all(commits);
    }
    await opened.state.close();
    expect(opened.state.stats.snapshotsWritten).toBeGreaterThan(2);
    expect(log.logStartOffset).toBeGreaterThan(0);
    await log.close();

    log = await openFileLog(directory);
    opened = openState(log, 8 * 1024);
    expect(contents(opened.machine)).toEqual(
      Object.fromEntries([...model].sort(([a], [b]) => (a < b ? -1 : 1))),
    );
    expect(opened.state.recovery.snapshotOffset).not.toBeNull();
    expect(opened.state.recovery.snapshots.length).toBeGreaterThanOrEqual(1);
    await opened.state.close();
    await log.close();
  });

  it.each(['begin marker', 'entries', 'end marker'] as const)(
    'falls back to the previous snapshot when a batch of the newest is damaged (%s)',
    async (part) => {
      const directory = temporaryDirectory();
      let log = await openFileLog(directory);
      let opened = openState(log);
      const model = new Map<string, string>();
      const put = async (from: number, to: number): Promise<void> => {
        const commits: Promise<number>[] = [];
        for (let i = from; i < to; i++) {
          model.set(`k${i % 70}`, `v${i}`);
          commits.push(opened.state.commit({ op: 'put', key: `k${i % 70}`, value: `v${i}` }));
        }
        await Promise.all(commits);
      };
      await put(0, 100);
      await opened.state.snapshot();
      await put(100, 200);
      await opened.state.snapshot();
      const newest = opened.state.stats.lastSnapshotOffset!;
      await put(200, 260);
      await opened.state.close();
      await log.close();

      // Flip a byte inside a control batch of the newest snapshot (its entries, past the begin marker).
      const segment = join(directory, '00000000000000000000.log');
      const batches = batchesOfFile(segment);
      // The begin marker, entry and end marker batches of the newest snapshot.
      const parts = batches.filter((batch) => batch.control && batch.baseOffset >= newest);
      expect(parts.length).toBeGreaterThanOrEqual(3);
      const target = part === 'begin marker' ? parts[0] : part === 'entries' ? parts[1] : parts.at(-1);
      expect(target).toBeDefined();
      const bytes = readFileSync(segment);
      bytes[target!.position + BatchHeader.size + 10] =
        bytes[target!.position + BatchHeader.size + 10]! ^ 0x40;
      writeFileSync(segment, bytes);

      log = await openFileLog(directory);
      opened = openState(log);
      const expected = Object.fromEntries([...model].sort(([a], [b]) => (a < b ? -1 : 1)));
      expect(contents(opened.machine)).toEqual(expected);
      expect(opened.state.recovery.snapshotOffset).toBeLessThan(newest);
      expect(opened.state.recovery.skippedSnapshots).toEqual([
        { beginOffset: newest, reason: 'damaged: a batch of it fails its CRC32C' },
      ]);
      await opened.state.close();
      await log.close();
    },
  );

  it('skips a snapshot cut short (killed while writing it) and replays from the one before', async () => {
    const log = new MemoryLog();
    let opened = openState(log);
    const model = new Map<string, string>();
    for (let i = 0; i < 40; i++) model.set(`k${i}`, `v${i}`);
    await Promise.all([...model].map(([key, value]) => opened.state.commit({ op: 'put', key, value })));
    await opened.state.snapshot();
    const first = opened.state.stats.lastSnapshotOffset!;
    model.set('after', 'first');
    await opened.state.commit({ op: 'put', key: 'after', value: 'first' });
    await opened.state.snapshot();
    const second = opened.state.stats.lastSnapshotOffset!;
    // Cut the log inside the second snapshot (its batches are 4 KiB at most: several).
    const boundaries = log.batchBaseOffsets().filter((offset) => offset > second);
    expect(boundaries.length).toBeGreaterThan(0);
    log.truncateTo(boundaries[0]!);
    opened = openState(log);
    expect(opened.state.recovery.snapshotOffset).toBe(first);
    expect(opened.state.recovery.skippedSnapshots).toEqual([
      { beginOffset: second, reason: 'cut short: the log ends inside it' },
    ]);
    expect(contents(opened.machine)).toEqual(
      Object.fromEntries([...model].sort(([a], [b]) => (a < b ? -1 : 1))),
    );
    // Commits continue after the cut snapshot; the next recovery still ignores it.
    await opened.state.commit({ op: 'put', key: 'later', value: 'x' });
    const again = openState(log);
    expect(again.machine.get('later')).toBe('x');
    expect(again.machine.get('after')).toBe('first');
  });

  it('refuses (CORRUPT_LOG) a damaged change that no snapshot covers, and a log cut at the front without one', async () => {
    const directory = temporaryDirectory();
    let log = await openFileLog(directory);
    let opened = openState(log);
    await opened.state.commit({ op: 'put', key: 'a', value: '1' });
    await opened.state.snapshot();
    await opened.state.commit({ op: 'put', key: 'b', value: '2' });
    await opened.state.close();
    await log.close();
    const segment = join(directory, '00000000000000000000.log');
    const bytes = readFileSync(segment);
    bytes[bytes.length - 2] = bytes[bytes.length - 2]! ^ 0x01;
    writeFileSync(segment, bytes);
    log = await openFileLog(directory);
    expect(() => openState(log)).toThrow(
      expect.objectContaining({
        code: 'CORRUPT_LOG',
        message: expect.stringMatching(/offsets 4\.\.4 fails its CRC32C/),
      }),
    );
    await log.close();

    const memory = new MemoryLog();
    opened = openState(memory);
    await opened.state.commit({ op: 'put', key: 'a', value: '1' });
    await opened.state.commit({ op: 'put', key: 'b', value: '2' });
    memory.deleteBefore(1);
    expect(() => openState(memory)).toThrow(expect.objectContaining({ code: 'CORRUPT_LOG' }));
  });

  it('fails closed after a failed append: the failed and every later commit reject, the state stays as logged', async () => {
    const memory = new MemoryLog();
    let failing = false;
    const log: LogStore = {
      get logStartOffset() {
        return memory.logStartOffset;
      },
      get logEndOffset() {
        return memory.logEndOffset;
      },
      get durableOffset() {
        return memory.durableOffset;
      },
      get sizeBytes() {
        return memory.sizeBytes;
      },
      get segmentCount() {
        return memory.segmentCount;
      },
      recovery: memory.recovery,
      applyRetention: (nowMs) => memory.applyRetention(nowMs),
      flush: () => memory.flush(),
      append: (batch) =>
        failing ? Promise.reject(new StorageIoError('injected EIO')) : memory.append(batch),
      read: (offset, maxBytes, maxOffset) => memory.read(offset, maxBytes, maxOffset),
      offsetForTime: (timestamp) => memory.offsetForTime(timestamp),
      truncateTo: (offset) => memory.truncateTo(offset),
      deleteBelow: (offset) => memory.deleteBelow(offset),
      close: () => memory.close(),
    };
    const { machine, state } = openState(log);
    await state.commit({ op: 'put', key: 'a', value: '1' });
    failing = true;
    await expect(state.commit({ op: 'put', key: 'b', value: '2' })).rejects.toMatchObject({
      code: 'STORAGE_IO',
    });
    failing = false;
    await expect(state.commit({ op: 'put', key: 'c', value: '3' })).rejects.toMatchObject({
      code: 'STORAGE_IO',
    });
    await expect(state.snapshot()).rejects.toMatchObject({ code: 'STORAGE_IO' });
    expect(contents(machine)).toEqual({ a: '1' });
  });

  it('bounds what is queued (BACKPRESSURE) and refuses an entry larger than a batch', async () => {
    const machine = new KeyValueState<string>();
    const state = StateLog.open<Entry>({
      name: 'bounded/0',
      log: new MemoryLog(),
      machine,
      codec,
      pendingBytesMax: 800,
      batchBytesMax: 600,
    });
    const accepted = Array.from({ length: 9 }, (_, i) =>
      state.commit({ op: 'put', key: `k${i}`, value: 'v'.repeat(80) }),
    );
    const refused = state.commit({ op: 'put', key: 'over', value: 'v'.repeat(80) });
    await expect(refused).rejects.toMatchObject({ code: 'BACKPRESSURE', retriable: true });
    await Promise.all(accepted);
    await expect(state.commit({ op: 'put', key: 'huge', value: 'v'.repeat(700) })).rejects.toBeInstanceOf(
      SpillwayError,
    );
    expect(machine.size).toBe(9);
    await state.close();
    await expect(state.commit({ op: 'put', key: 'late', value: '' })).rejects.toMatchObject({
      code: 'LOG_CLOSED',
    });
  });
});

type Operation =
  | { kind: 'put'; key: number; value: string }
  | { kind: 'delete'; key: number }
  | { kind: 'snapshot' }
  | { kind: 'reopen' };

const operation: fc.Arbitrary<Operation> = fc.oneof(
  {
    weight: 8,
    arbitrary: fc.record({
      kind: fc.constant('put' as const),
      key: fc.nat(40),
      value: fc.string({ maxLength: 120 }),
    }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('delete' as const), key: fc.nat(40) }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'snapshot' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'reopen' as const }) },
);

/** Runs `operations` in groups (each group committed without awaiting) and checks the state against a Map. */
async function runModel(
  operations: Operation[][],
  store: { open(): Promise<LogStore>; close(log: LogStore): Promise<void> },
): Promise<void> {
  const model = new Map<string, string>();
  let log = await store.open();
  let opened = openState(log, 2048);
  const expectModel = (): void =>
    expect(contents(opened.machine)).toEqual(
      Object.fromEntries([...model].sort(([a], [b]) => (a < b ? -1 : 1))),
    );
  for (const group of operations) {
    const commits: Promise<number>[] = [];
    for (const op of group) {
      if (op.kind === 'put') {
        model.set(`k${op.key}`, op.value);
        commits.push(opened.state.commit({ op: 'put', key: `k${op.key}`, value: op.value }));
      } else if (op.kind === 'delete') {
        model.delete(`k${op.key}`);
        commits.push(opened.state.commit({ op: 'delete', key: `k${op.key}` }));
      } else if (op.kind === 'snapshot') {
        commits.push(opened.state.snapshot().then(() => 0));
      }
    }
    await Promise.all(commits);
    expectModel();
    if (group.some((op) => op.kind === 'reopen')) {
      await opened.state.close();
      await store.close(log);
      log = await store.open();
      opened = openState(log, 2048);
      expectModel();
    }
  }
  await opened.state.close();
  await store.close(log);
}

describe('StateLog model', () => {
  const groups = fc.array(fc.array(operation, { minLength: 1, maxLength: 30 }), {
    minLength: 1,
    maxLength: 25,
  });

  it('matches a Map over MemoryLog', async () => {
    await fc.assert(
      fc.asyncProperty(groups, async (operations) => {
        const memory = new MemoryLog();
        await runModel(operations, { open: async () => memory, close: async () => undefined });
      }),
      { numRuns: 60, seed: 0x5eed },
    );
  });

  it('matches a Map over PartitionLog (small segments: rolls and deletions behind snapshots)', async () => {
    await fc.assert(
      fc.asyncProperty(groups, async (operations) => {
        const directory = temporaryDirectory();
        await runModel(operations, {
          open: () => openFileLog(directory),
          close: (log) => log.close(),
        });
      }),
      { numRuns: 25, seed: 0x5eed },
    );
  });
});

describe('state log in a cluster (replicate, detach)', () => {
  it('answers a commit only once replicate resolves; a failed replication applies but rejects', async () => {
    const log = new MemoryLog();
    const { machine, state } = openState(log);
    const waiting: Array<{ endOffset: number; resolve: () => void; reject: (error: unknown) => void }> = [];
    state.replicate = (endOffset) =>
      new Promise<void>((resolve, reject) => waiting.push({ endOffset, resolve, reject }));
    let answered = false;
    const first = state.commit({ op: 'put', key: 'a', value: '1' }).then((offset) => {
      answered = true;
      return offset;
    });
    await waitUntil(() => waiting.length === 1);
    expect(waiting[0]!.endOffset).toBe(log.logEndOffset);
    await new Promise((resolve) => setImmediate(resolve));
    expect(answered).toBe(false);
    expect(contents(machine)).toEqual({});
    waiting[0]!.resolve();
    expect(await first).toBe(log.logEndOffset - 1);
    expect(contents(machine)).toEqual({ a: '1' });

    const second = state.commit({ op: 'put', key: 'b', value: '2' });
    await waitUntil(() => waiting.length === 2);
    waiting[1]!.reject(new SpillwayError('NOT_ENOUGH_REPLICAS', 'the ISR shrank'));
    await expect(second).rejects.toMatchObject({ code: 'NOT_ENOUGH_REPLICAS' });
    // In the local log, so in the machine (a later leader may or may not keep it).
    expect(contents(machine)).toEqual({ a: '1', b: '2' });
    // Not failed: later commits go on.
    const third = state.commit({ op: 'put', key: 'c', value: '3' });
    await waitUntil(() => waiting.length === 3);
    waiting[2]!.resolve();
    await third;
    expect(contents(machine)).toEqual({ a: '1', b: '2', c: '3' });
  });

  it('detach refuses queued and later commits at once and appends nothing more', async () => {
    const log = new MemoryLog();
    const { state } = openState(log);
    await state.commit({ op: 'put', key: 'a', value: '1' });
    const end = log.logEndOffset;
    const queued = state.commit({ op: 'put', key: 'b', value: '2' });
    state.detach(new SpillwayError('NOT_COORDINATOR', 'moved'));
    await expect(queued).rejects.toMatchObject({ code: 'NOT_COORDINATOR' });
    await expect(state.commit({ op: 'put', key: 'c', value: '3' })).rejects.toMatchObject({
      code: 'LOG_CLOSED',
    });
    await new Promise((resolve) => setImmediate(resolve));
    expect(log.logEndOffset).toBe(end);
  });
});

async function waitUntil(condition: () => boolean): Promise<void> {
  for (let turn = 0; turn < 1000 && !condition(); turn++)
    await new Promise((resolve) => setImmediate(resolve));
  expect(condition()).toBe(true);
}
