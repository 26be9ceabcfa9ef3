/**
 * Model-based test of the storage: random sequences of operations run against PartitionLog (the file
 * log) and MemoryLog (the reference model), which must give the same answers: the same append
 * offsets, the same read results byte for byte, the same offsetForTime, the same errors, the same
 * log start and end. PartitionLog is also closed and reopened (cleanly, and after an emulated crash:
 * its directory is copied while it is open, so the copy's checkpoint says the log was not closed and
 * opening it runs recovery), and its retention deletes whole segments, which the model then follows
 * with `deleteBefore`.
 *
 * One deliberate difference is allowed: PartitionLog returns at most the rest of one segment per read
 * (a view of one map), so a read of it may stop early. Its result must then be a prefix of the
 * model's, at least one batch, ending exactly where a segment file starts.
 *
 * On failure fast-check prints the seed, the path and the shrunk commands; the error message also
 * lists the operations of the failing run with the offsets they resolved to. Replay one with
 * SPILLWAY_PROPERTY_SEED=<seed> SPILLWAY_PROPERTY_PATH=<path> (runs where segments roll by age, a
 * `segmentMs` of a few milliseconds, depend on timing and may not replay exactly). SPILLWAY_PROPERTY_RUNS
 * changes the number of runs (40 by default, about 2 s); SPILLWAY_PROPERTY_STATS=1 prints what they covered.
 */
import { cpSync, existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, it } from 'vitest';
import { SpillwayError } from '../../src/errors.js';
import { batchBaseOffset, batchLengthAt, batchMaxTimestampAt } from '../../src/format/batch-header.js';
import { encodeBatch } from '../../src/format/record-batch.js';
import { segmentFileName } from '../../src/storage/log-segment.js';
import type { ReadResult } from '../../src/storage/log-store.js';
import { MemoryLog } from '../../src/storage/memory-log.js';
import { PartitionLog, type PartitionLogOptions } from '../../src/storage/partition-log.js';
import type { Durability } from '../../src/storage/sync-scheduler.js';
import { temporaryDirectory } from './helpers.js';

/** The smallest segment size allowed, so that segments roll often. */
const segmentBytes = 64 * 1024;
const numRuns = Number(process.env['SPILLWAY_PROPERTY_RUNS'] ?? 40);
const maxCommands = 60;

interface RunConfig {
  durability: Durability;
  /** Null: the default (a week). A few milliseconds: segments roll by age, often after one batch. */
  segmentMs: number | null;
  flushIntervalMs: number;
  indexIntervalBytes: number;
  retentionMs: number;
  retentionBytes: number;
}

const runConfigArbitrary: fc.Arbitrary<RunConfig> = fc.record({
  durability: fc.constantFrom<Durability>('none', 'interval', 'always'),
  segmentMs: fc.oneof(
    { arbitrary: fc.constant(null), weight: 3 },
    { arbitrary: fc.integer({ min: 1, max: 5 }), weight: 1 },
  ),
  flushIntervalMs: fc.integer({ min: 1, max: 50 }),
  indexIntervalBytes: fc.integer({ min: 256, max: 4096 }),
  retentionMs: fc.oneof(fc.constant(-1), fc.integer({ min: 0, max: 100_000 })),
  retentionBytes: fc.oneof(fc.constant(-1), fc.integer({ min: segmentBytes, max: 4 * segmentBytes })),
});

const stats = {
  runs: 0,
  commands: 0,
  appends: 0,
  appendedBytes: 0,
  reads: 0,
  shortReads: 0,
  maxSegments: 0,
  truncations: 0,
  retentionDeletions: 0,
  cleanReopens: 0,
  uncleanReopens: 0,
};

/** What the model side holds: the reference log and a counter that makes every batch's bytes distinct. */
interface ModelSide {
  memory: MemoryLog;
  batchesMade: number;
}

/** The file side: the current PartitionLog, its directory, and the trace of the run. */
class FileSide {
  log!: PartitionLog;
  directory = '';
  trace: string[] = [];
  private generation = 0;

  constructor(
    readonly root: string,
    readonly config: RunConfig,
  ) {}

  options(directory: string): PartitionLogOptions {
    return {
      directory,
      durability: this.config.durability,
      flushIntervalMs: this.config.flushIntervalMs,
      segmentBytes,
      ...(this.config.segmentMs === null ? {} : { segmentMs: this.config.segmentMs }),
      indexIntervalBytes: this.config.indexIntervalBytes,
      retentionMs: this.config.retentionMs,
      retentionBytes: this.config.retentionBytes,
    };
  }

  async openFresh(): Promise<void> {
    this.directory = join(this.root, `log-${this.generation}`);
    this.log = await PartitionLog.open(this.options(this.directory));
  }

  async reopenClean(): Promise<void> {
    await this.log.close();
    this.log = await PartitionLog.open(this.options(this.directory));
  }

  /** Continues with a copy taken while the log is open: to the copy, the log crashed. */
  async reopenUnclean(): Promise<void> {
    this.generation++;
    const copy = join(this.root, `log-${this.generation}`);
    cpSync(this.directory, copy, { recursive: true });
    await this.log.close();
    rmSync(this.directory, { recursive: true, force: true });
    this.directory = copy;
    this.log = await PartitionLog.open(this.options(copy));
  }
}

// ---- Comparing answers --------------------------------------------------------------------------

class Mismatch extends Error {
  override name = 'Mismatch';
}

function check(condition: boolean, message: () => string): asserts condition {
  if (!condition) throw new Mismatch(message());
}

type Outcome<T> = { ok: true; value: T } | { ok: false; error: unknown };

function attempt<T>(action: () => T): Outcome<T> {
  try {
    return { ok: true, value: action() };
  } catch (error) {
    return { ok: false, error };
  }
}

async function attemptAsync<T>(action: () => Promise<T>): Promise<Outcome<T>> {
  try {
    return { ok: true, value: await action() };
  } catch (error) {
    return { ok: false, error };
  }
}

function describeError(error: unknown): string {
  if (error instanceof SpillwayError) return `${error.name}(${error.code}): ${error.message}`;
  if (error instanceof Error) return `${error.name}: ${error.message}`;
  return String(error);
}

function errorKind(error: unknown): string {
  if (error instanceof SpillwayError) return error.code;
  return error instanceof Error ? error.name : typeof error;
}

function describeOutcome<T>(outcome: Outcome<T>, show: (value: T) => string): string {
  return outcome.ok ? show(outcome.value) : `throws ${describeError(outcome.error)}`;
}

/** Both fail with the same kind of error, or both succeed and `compare` accepts the values. */
function expectSameOutcome<T>(
  what: string,
  expected: Outcome<T>,
  actual: Outcome<T>,
  show: (value: T) => string,
  compare: (expected: T, actual: T) => void,
): void {
  const message = () =>
    `${what}: model ${describeOutcome(expected, show)}, PartitionLog ${describeOutcome(actual, show)}`;
  if (!expected.ok || !actual.ok) {
    check(!expected.ok && !actual.ok && errorKind(expected.error) === errorKind(actual.error), message);
    return;
  }
  compare(expected.value, actual.value);
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(
    Buffer.from(b.buffer, b.byteOffset, b.byteLength),
  );
}

function firstDifference(a: Uint8Array, b: Uint8Array): number {
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i++) if (a[i] !== b[i]) return i;
  return length;
}

function showRead(result: ReadResult): string {
  const { batchCount, firstOffset, nextOffset, logStartOffset, logEndOffset } = result;
  return JSON.stringify({
    batchCount,
    bytes: result.bytes.length,
    firstOffset,
    nextOffset,
    logStartOffset,
    logEndOffset,
  });
}

/**
 * The same read result, or (PartitionLog stopping at the end of a segment) a non-empty prefix of the
 * model's, cut at a batch boundary where a segment file starts.
 */
function compareReads(what: string, expected: ReadResult, actual: ReadResult, directory: string): void {
  const message = (problem: string) => () =>
    `${what}: ${problem}; model ${showRead(expected)}, PartitionLog ${showRead(actual)}`;
  check(
    actual.logStartOffset === expected.logStartOffset && actual.logEndOffset === expected.logEndOffset,
    message('log bounds differ'),
  );
  check(actual.firstOffset === expected.firstOffset, message('firstOffset differs'));
  if (actual.batchCount === expected.batchCount) {
    check(actual.nextOffset === expected.nextOffset, message('nextOffset differs'));
    check(
      bytesEqual(actual.bytes, expected.bytes),
      message(`bytes differ (first difference at byte ${firstDifference(expected.bytes, actual.bytes)})`),
    );
    return;
  }
  check(
    actual.batchCount >= 1 && actual.batchCount < expected.batchCount,
    message('batch counts differ (and PartitionLog did not just stop at a segment end)'),
  );
  let cut = 0;
  for (let i = 0; i < actual.batchCount; i++) cut += batchLengthAt(expected.bytes, cut);
  check(
    actual.bytes.length === cut && bytesEqual(actual.bytes, expected.bytes.subarray(0, cut)),
    message(
      `short read is not a prefix of the model's (first difference at ${firstDifference(expected.bytes, actual.bytes)})`,
    ),
  );
  const next = batchBaseOffset(expected.bytes, cut);
  check(actual.nextOffset === next, message(`short read's nextOffset is not ${next}`));
  check(
    existsSync(join(directory, segmentFileName(next, '.log'))),
    message(`short read does not end at a segment boundary (no segment starts at ${next})`),
  );
  stats.shortReads++;
}

function expectSameBounds(what: string, model: ModelSide, file: FileSide): void {
  const memory = model.memory;
  const log = file.log;
  check(
    memory.logStartOffset === log.logStartOffset && memory.logEndOffset === log.logEndOffset,
    () =>
      `${what}: log bounds differ: model [${memory.logStartOffset}, ${memory.logEndOffset}], ` +
      `PartitionLog [${log.logStartOffset}, ${log.logEndOffset}]`,
  );
  stats.maxSegments = Math.max(stats.maxSegments, log.segmentCount);
}

function compareRead(
  what: string,
  model: ModelSide,
  file: FileSide,
  offset: number,
  maxBytes: number,
  maxOffset?: number,
): ReadResult | null {
  const expected = attempt(() => model.memory.read(offset, maxBytes, maxOffset));
  const actual = attempt(() => file.log.read(offset, maxBytes, maxOffset));
  expectSameOutcome(what, expected, actual, showRead, (e, a) => compareReads(what, e, a, file.directory));
  stats.reads++;
  return actual.ok ? actual.value : null;
}

/** Reads the whole log from its start, in pieces of at most `maxBytes`, on both sides. */
function compareEverything(what: string, model: ModelSide, file: FileSide, maxBytes: number): void {
  let offset = model.memory.logStartOffset;
  const end = model.memory.logEndOffset;
  let reads = 0;
  while (offset < end) {
    const result = compareRead(`${what}: read(${offset}, ${maxBytes})`, model, file, offset, maxBytes);
    check(result !== null && result.nextOffset > offset, () => `${what}: read at ${offset} made no progress`);
    offset = result.nextOffset;
    check(++reads <= 100_000, () => `${what}: too many reads`);
  }
  compareRead(`${what}: read at the end (${end})`, model, file, end, maxBytes);
}

/** An integer in [low, high] picked by `fraction` in [0, fractionMax]: commands are made before the log they act on. */
const fractionMax = 1_000_000;
const fractionArbitrary = fc.integer({ min: 0, max: fractionMax });
function pick(fraction: number, low: number, high: number): number {
  return low + Math.min(high - low, Math.floor((fraction / (fractionMax + 1)) * (high - low + 1)));
}

type LogCommand = fc.AsyncCommand<ModelSide, FileSide, false>;

abstract class BaseCommand implements LogCommand {
  check(): boolean {
    return true;
  }

  async run(model: ModelSide, file: FileSide): Promise<void> {
    const what = await this.apply(model, file);
    file.trace.push(what);
    stats.commands++;
    expectSameBounds(what, model, file);
  }

  /** Runs the operation on both sides, checks the answers, returns what it did with resolved values. */
  protected abstract apply(model: ModelSide, file: FileSide): Promise<string>;
  abstract toString(): string;
}

// ---- Commands ------------------------------------------------------------------------------------

interface AppendSpec {
  firstTimestamp: number;
  records: Array<{ valueBytes: number; timestampDelta: number }>;
}

/**
 * Appends one or more batches, all issued before any is awaited (as producers do; offsets must follow
 * call order on both sides).
 */
class AppendCommand extends BaseCommand {
  constructor(readonly specs: AppendSpec[]) {
    super();
  }

  protected async apply(model: ModelSide, file: FileSide): Promise<string> {
    const batches = this.specs.map((spec) => {
      const batchNumber = model.batchesMade++;
      const batch = encodeBatch(
        spec.records.map((record, index) => ({
          key: `b${batchNumber}-${index}`,
          value: Buffer.alloc(record.valueBytes, (batchNumber * 7 + index) & 0xff),
          timestamp:
            index === 0 ? spec.firstTimestamp : Math.max(0, spec.firstTimestamp + record.timestampDelta),
        })),
      );
      return { batchNumber, batch };
    });
    const expected = await Promise.all(
      batches.map(({ batch }) => attemptAsync(() => model.memory.append(batch))),
    );
    const actual = await Promise.all(batches.map(({ batch }) => attemptAsync(() => file.log.append(batch))));
    const done: string[] = [];
    batches.forEach(({ batchNumber, batch }, i) => {
      const what = `append(batch ${batchNumber}: ${batch.length} bytes, ${this.specs[i]!.records.length} records)`;
      expectSameOutcome(
        what,
        expected[i]!,
        actual[i]!,
        (r) => JSON.stringify(r),
        (e, a) => {
          check(
            e.baseOffset === a.baseOffset && e.lastOffset === a.lastOffset && e.durability === a.durability,
            () => `${what}: model ${JSON.stringify(e)}, PartitionLog ${JSON.stringify(a)}`,
          );
        },
      );
      const result = expected[i]!;
      done.push(`${what} -> ${result.ok ? result.value.baseOffset : 'error'}`);
      stats.appends++;
      stats.appendedBytes += batch.length;
    });
    return done.join('; ');
  }

  toString(): string {
    const batches = this.specs.map(
      (spec) => `{t=${spec.firstTimestamp}, valueBytes=[${spec.records.map((r) => r.valueBytes).join(',')}]}`,
    );
    return `append(${batches.join(', ')})`;
  }
}

/** A number of bytes, or the exact size of the first `batches` batches of the read plus `delta` (edges). */
type MaxBytesSpec = { bytes: number } | { batches: number; delta: number };

function resolveMaxBytes(spec: MaxBytesSpec, memory: MemoryLog, offset: number): number {
  if ('bytes' in spec) return spec.bytes;
  const all = memory.read(offset, Number.MAX_SAFE_INTEGER).bytes;
  let size = 0;
  for (let i = 0; i < spec.batches && size < all.length; i++) size += batchLengthAt(all, size);
  return Math.max(1, size + spec.delta);
}

function showMaxBytes(spec: MaxBytesSpec): string {
  return 'bytes' in spec
    ? String(spec.bytes)
    : `size of ${spec.batches} batches${spec.delta < 0 ? '' : '+'}${spec.delta}`;
}

class ReadCommand extends BaseCommand {
  constructor(
    readonly offsetFraction: number,
    readonly maxBytes: MaxBytesSpec,
    readonly maxOffsetFraction: number | null,
  ) {
    super();
  }

  protected async apply(model: ModelSide, file: FileSide): Promise<string> {
    const { logStartOffset: start, logEndOffset: end } = model.memory;
    const offset = pick(this.offsetFraction, start, end);
    const maxBytes = resolveMaxBytes(this.maxBytes, model.memory, offset);
    const maxOffset =
      this.maxOffsetFraction === null ? undefined : pick(this.maxOffsetFraction, start, end + 1);
    const what = `read(${offset}, ${maxBytes}${maxOffset === undefined ? '' : `, ${maxOffset}`})`;
    compareRead(what, model, file, offset, maxBytes, maxOffset);
    return what;
  }

  toString(): string {
    return `read(offset~${this.offsetFraction}, maxBytes=${showMaxBytes(this.maxBytes)}, maxOffset~${this.maxOffsetFraction})`;
  }
}

class ReadEverythingCommand extends BaseCommand {
  constructor(readonly maxBytes: number) {
    super();
  }

  protected async apply(model: ModelSide, file: FileSide): Promise<string> {
    const what = `readEverything(${this.maxBytes})`;
    compareEverything(what, model, file, this.maxBytes);
    return what;
  }

  toString(): string {
    return `readEverything(maxBytes=${this.maxBytes})`;
  }
}

/** A timestamp, or the largest max timestamp of the batches up to one picked by `batchFraction`, plus `delta` (edges). */
type TimestampSpec = { timestamp: number } | { batchFraction: number; delta: number };

class OffsetForTimeCommand extends BaseCommand {
  constructor(readonly spec: TimestampSpec) {
    super();
  }

  protected async apply(model: ModelSide, file: FileSide): Promise<string> {
    const timestamp = this.resolve(model.memory);
    const what = `offsetForTime(${timestamp})`;
    const expected = attempt(() => model.memory.offsetForTime(timestamp));
    const actual = attempt(() => file.log.offsetForTime(timestamp));
    expectSameOutcome(what, expected, actual, String, (e, a) => {
      check(e === a, () => `${what}: model ${e}, PartitionLog ${a}`);
    });
    return `${what} -> ${expected.ok ? expected.value : 'error'}`;
  }

  /** For the edge case, the largest max timestamp of the batches up to the picked one: the answer is then the batch that set it. */
  private resolve(memory: MemoryLog): number {
    if ('timestamp' in this.spec) return this.spec.timestamp;
    const bases = memory.batchBaseOffsets();
    const count = pick(this.spec.batchFraction, 0, bases.length - 1) + 1;
    let largest = 0;
    for (const base of bases.slice(0, count)) {
      largest = Math.max(largest, batchMaxTimestampAt(memory.read(base, 1).bytes, 0));
    }
    return largest + this.spec.delta;
  }

  toString(): string {
    return 'timestamp' in this.spec
      ? `offsetForTime(${this.spec.timestamp})`
      : `offsetForTime(max timestamp up to batch~${this.spec.batchFraction} ${this.spec.delta < 0 ? '' : '+'}${this.spec.delta})`;
  }
}

/** Truncates to a batch boundary: `batchesCut` from the end, or anywhere when `boundaryFraction` is set. */
class TruncateCommand extends BaseCommand {
  constructor(
    readonly batchesCut: number,
    readonly boundaryFraction: number | null,
  ) {
    super();
  }

  protected async apply(model: ModelSide, file: FileSide): Promise<string> {
    const boundaries = [...model.memory.batchBaseOffsets(), model.memory.logEndOffset];
    const last = boundaries.length - 1;
    const index =
      this.boundaryFraction === null
        ? Math.max(0, last - this.batchesCut)
        : pick(this.boundaryFraction, 0, last);
    const offset = boundaries[index]!;
    const what = `truncateTo(${offset})`;
    const expected = attempt(() => model.memory.truncateTo(offset));
    const actual = attempt(() => file.log.truncateTo(offset));
    expectSameOutcome(
      what,
      expected,
      actual,
      () => 'ok',
      () => undefined,
    );
    stats.truncations++;
    return what;
  }

  toString(): string {
    return this.boundaryFraction === null
      ? `truncateTo(${this.batchesCut} batches from the end)`
      : `truncateTo(boundary~${this.boundaryFraction})`;
  }
}

class RetentionCommand extends BaseCommand {
  constructor(readonly nowMs: number) {
    super();
  }

  protected async apply(model: ModelSide, file: FileSide): Promise<string> {
    const memory = model.memory;
    const before = memory.logStartOffset;
    const result = file.log.applyRetention(this.nowMs);
    const start = result.logStartOffset;
    const what = `applyRetention(${this.nowMs}) -> start ${start}, ${result.deletedSegments} segments, ${result.deletedBytes} bytes`;
    check(start === file.log.logStartOffset, () => `${what}: the result's start differs from the log's`);
    check(
      start >= before && start <= memory.logEndOffset,
      () => `${what}: start outside [${before}, ${memory.logEndOffset}]`,
    );
    check(
      result.deletedSegments > 0 || start === before,
      () => `${what}: the start moved without deleting anything`,
    );
    // Segments hold whole batches: the model says how many bytes lie before the new start.
    const sizeBefore = memory.sizeBytes;
    memory.deleteBefore(start); // Throws when the new start is not a batch boundary.
    check(
      sizeBefore - memory.sizeBytes === result.deletedBytes,
      () =>
        `${what}: deleted ${result.deletedBytes} bytes, the batches before the new start hold ${sizeBefore - memory.sizeBytes}`,
    );
    if (start > 0) {
      for (const offset of new Set([start - 1, Math.floor(start / 2), 0])) {
        const expected = attempt(() => memory.read(offset, 1000));
        const actual = attempt(() => file.log.read(offset, 1000));
        check(
          !expected.ok &&
            !actual.ok &&
            errorKind(expected.error) === 'OFFSET_OUT_OF_RANGE' &&
            errorKind(actual.error) === 'OFFSET_OUT_OF_RANGE',
          () =>
            `${what}: read(${offset}) below the start: model ${describeOutcome(expected, showRead)}, ` +
            `PartitionLog ${describeOutcome(actual, showRead)}`,
        );
      }
    }
    stats.retentionDeletions += result.deletedSegments;
    return what;
  }

  toString(): string {
    return `applyRetention(${this.nowMs})`;
  }
}

class ReopenCommand extends BaseCommand {
  constructor(
    readonly clean: boolean,
    readonly scanMaxBytes: number,
  ) {
    super();
  }

  protected async apply(model: ModelSide, file: FileSide): Promise<string> {
    const what = this.clean ? 'close and reopen' : 'reopen a copy taken while open (unclean)';
    if (this.clean) await file.reopenClean();
    else await file.reopenUnclean();
    const recovery = file.log.recovery;
    check(
      recovery.cleanShutdown === this.clean,
      () => `${what}: recovery says cleanShutdown ${recovery.cleanShutdown}`,
    );
    check(
      recovery.truncation === null,
      () => `${what}: recovery cut data that was all there: ${JSON.stringify(recovery.truncation)}`,
    );
    if (this.clean)
      check(recovery.segmentsScanned === 0, () => `${what}: scanned ${recovery.segmentsScanned} segments`);
    expectSameBounds(what, model, file);
    const batches = attempt(() => file.log.verify());
    check(
      batches.ok && batches.value === model.memory.batchCount,
      () =>
        `${what}: verify() ${describeOutcome(batches, String)}, model holds ${model.memory.batchCount} batches`,
    );
    compareEverything(what, model, file, this.scanMaxBytes);
    if (this.clean) stats.cleanReopens++;
    else stats.uncleanReopens++;
    return what;
  }

  toString(): string {
    return this.clean ? 'reopenClean' : 'reopenUnclean';
  }
}

/** Invalid requests: both sides must refuse them with the same kind of error and change nothing. */
class InvalidRequestCommand extends BaseCommand {
  constructor(readonly kind: number) {
    super();
  }

  protected async apply(model: ModelSide, file: FileSide): Promise<string> {
    const memory = model.memory;
    const { logStartOffset: start, logEndOffset: end } = memory;
    const both = <T>(what: string, action: (log: MemoryLog | PartitionLog) => T) => {
      const expected = attempt(() => action(memory));
      const actual = attempt(() => action(file.log));
      check(!expected.ok, () => `${what}: the model accepted an invalid request`);
      expectSameOutcome(
        what,
        expected,
        actual,
        () => 'ok',
        () => undefined,
      );
      return what;
    };
    const bothAsync = async (what: string, action: (log: MemoryLog | PartitionLog) => Promise<unknown>) => {
      const expected = await attemptAsync(() => action(memory));
      const actual = await attemptAsync(() => action(file.log));
      check(!expected.ok, () => `${what}: the model accepted an invalid request`);
      expectSameOutcome(
        what,
        expected,
        actual,
        () => 'ok',
        () => undefined,
      );
      return what;
    };
    switch (this.kind) {
      case 0:
        return both(`read(${end + 1}, 100) past the end`, (log) => log.read(end + 1, 100));
      case 1:
        return start > 0
          ? both(`read(${start - 1}, 100) before the start`, (log) => log.read(start - 1, 100))
          : both(`read(${start}, 0)`, (log) => log.read(start, 0));
      case 2: {
        const bases = [...memory.batchBaseOffsets(), end];
        const index = bases.findIndex((base, i) => i + 1 < bases.length && bases[i + 1]! - base > 1);
        const offset = index >= 0 ? bases[index]! + 1 : end + 1;
        return both(`truncateTo(${offset}) inside a batch or past the end`, (log) => log.truncateTo(offset));
      }
      case 3: {
        const batch = encodeBatch([{ value: 'torn', timestamp: 1 }]);
        return bothAsync('append(a batch missing its last byte)', (log) =>
          log.append(batch.subarray(0, batch.length - 1)),
        );
      }
      default:
        return bothAsync('append(100 zero bytes)', (log) => log.append(new Uint8Array(100)));
    }
  }

  toString(): string {
    return `invalidRequest(${this.kind})`;
  }
}

const appendSpecArbitrary: fc.Arbitrary<AppendSpec> = fc.record({
  firstTimestamp: fc.integer({ min: 0, max: 100_000 }),
  records: fc.array(
    fc.record({
      // Half small values, half up to 3000 bytes: many batches per segment, and segments that roll.
      // (noBias: fast-check otherwise favours the small end of the range.)
      valueBytes: fc.oneof(fc.integer({ min: 0, max: 100 }), fc.noBias(fc.integer({ min: 0, max: 3000 }))),
      timestampDelta: fc.integer({ min: -5000, max: 5000 }),
    }),
    { minLength: 1, maxLength: 20 },
  ),
});

const appendArbitrary = fc
  .array(appendSpecArbitrary, { minLength: 1, maxLength: 6 })
  .map((specs) => new AppendCommand(specs));

const maxBytesArbitrary = fc.oneof(fc.integer({ min: 1, max: 500 }), fc.integer({ min: 1, max: 200_000 }));

const maxBytesSpecArbitrary: fc.Arbitrary<MaxBytesSpec> = fc.oneof(
  maxBytesArbitrary.map((bytes) => ({ bytes })),
  fc.record({ batches: fc.integer({ min: 1, max: 8 }), delta: fc.integer({ min: -1, max: 1 }) }),
);

const readArbitrary = fc
  .tuple(fractionArbitrary, maxBytesSpecArbitrary, fc.option(fractionArbitrary, { nil: null }))
  .map(([offset, maxBytes, maxOffset]) => new ReadCommand(offset, maxBytes, maxOffset));

const timestampSpecArbitrary: fc.Arbitrary<TimestampSpec> = fc.oneof(
  fc.integer({ min: 0, max: 110_000 }).map((timestamp) => ({ timestamp })),
  fc.record({ batchFraction: fractionArbitrary, delta: fc.integer({ min: -1, max: 1 }) }),
);

const commandArbitraries: Array<fc.Arbitrary<LogCommand>> = [
  appendArbitrary,
  appendArbitrary,
  appendArbitrary,
  appendArbitrary,
  appendArbitrary,
  appendArbitrary,
  readArbitrary,
  readArbitrary,
  maxBytesArbitrary.map((maxBytes) => new ReadEverythingCommand(maxBytes)),
  timestampSpecArbitrary.map((spec) => new OffsetForTimeCommand(spec)),
  // Mostly the last few batches (as replication does), sometimes anywhere.
  fc.oneof(
    { arbitrary: fc.integer({ min: 0, max: 6 }).map((cut) => new TruncateCommand(cut, null)), weight: 3 },
    { arbitrary: fractionArbitrary.map((fraction) => new TruncateCommand(0, fraction)), weight: 1 },
  ),
  fc.integer({ min: 0, max: 250_000 }).map((nowMs) => new RetentionCommand(nowMs)),
  fc.tuple(fc.boolean(), maxBytesArbitrary).map(([clean, maxBytes]) => new ReopenCommand(clean, maxBytes)),
  fc.integer({ min: 0, max: 4 }).map((kind) => new InvalidRequestCommand(kind)),
];

describe('PartitionLog against MemoryLog', () => {
  it(
    'gives the same answers over random operation sequences, reopens and crashes included',
    async () => {
      const seed = process.env['SPILLWAY_PROPERTY_SEED'];
      const path = process.env['SPILLWAY_PROPERTY_PATH'];
      await fc.assert(
        fc.asyncProperty(
          runConfigArbitrary,
          fc.commands(commandArbitraries, { maxCommands, size: 'max' }),
          async (config, commands) => {
            stats.runs++;
            const root = temporaryDirectory('spillway-model-');
            const file = new FileSide(root.path, config);
            try {
              await file.openFresh();
              const model: ModelSide = {
                memory: new MemoryLog({ durability: config.durability }),
                batchesMade: 0,
              };
              try {
                await fc.asyncModelRun(() => ({ model, real: file }), commands);
              } catch (error) {
                const trace = file.trace.map((line, i) => `  ${i + 1}. ${line}`).join('\n');
                throw new Error(`${describeError(error)}\nOperations of this run, resolved:\n${trace}`, {
                  cause: error,
                });
              }
            } finally {
              await file.log?.close().catch(() => undefined);
              root.remove();
            }
          },
        ),
        {
          numRuns,
          ...(seed === undefined ? {} : { seed: Number(seed) }),
          ...(path === undefined ? {} : { path }),
        },
      );
      if (process.env['SPILLWAY_PROPERTY_STATS']) console.log(JSON.stringify(stats));
    },
    Math.max(120_000, numRuns * 1000),
  );
});
