/**
 * Backlog drain: moves a consumer group's unconsumed backlog of a topic into a new, wider topic, so
 * that more consumers can work it off (`spillway backlog drain SRC --group G --into TMP
 * --partitions N`; docs/BACKLOG.md). Works over any transport: `drainBacklog(sw, ...)` with a client
 * connected over WebSocket or in process.
 *
 * What it does:
 *  1. Checks G: a group-mode group (or one the broker does not know yet) with no live member on the
 *     broker — its members must not consume SRC while it is drained (GROUP_NOT_EMPTY otherwise).
 *  2. Creates TMP if missing, with `partitions` partitions and SRC's durability; an existing TMP must
 *     have exactly `partitions` partitions (a key's partition depends on the count).
 *  3. Takes SRC's end offsets now: the backlog is, per partition, [G's committed offset (the log
 *     start when none), end). Messages produced later stay in SRC for G.
 *  4. Resume: when TMP already holds messages, reads TMP once to its current end and collects, from
 *     the `sw-drain-source` / `sw-drain-group` headers (protocol/reserved-headers.ts) of copies made
 *     for this (SRC, G), the source offsets at or above G's committed offsets: copied by an earlier
 *     run that stopped (Ctrl-C, SIGKILL, lost connection) before it committed them. Those are skipped.
 *  5. Joins G as its only member (a GroupConsumer on SRC) and copies every backlog message into TMP:
 *     key, value, headers and timestamp kept, plus the two drain headers. A keyed message goes to
 *     partition murmur2(key) % partitions of TMP (what a producer would pick), so a key's messages
 *     of one source partition stay in their order; unkeyed messages are spread round-robin.
 *  6. A source message is acked only once the broker acknowledged its copy under TMP's durability;
 *     the group consumer commits the contiguous acked prefix every commitIntervalMs, and once more
 *     when the drain ends (then the drain checks that G's committed offsets reached the end offsets).
 *
 * Never doubles: the producer does not retry (retries: 0; a failed send ends the drain, a rerun
 * resumes) and keeps one batch in flight per TMP partition, so what the broker appended to a TMP
 * partition is always a prefix of what was sent to it. Every copied message is either at or below
 * G's committed offset (never read again) or found by the resume scan (skipped). A key's later
 * messages are never copied before its earlier ones: within one TMP partition the appended copies are
 * a prefix of the send order, so a key's copies missing after a crash all come after its present ones.
 *
 * Costs and bounds: at most `inFlightMessagesMax` copies unacknowledged at once; the resume scan reads
 * all of TMP (time in proportion to TMP's size) and keeps the copied-but-uncommitted source offsets,
 * at most drainResumeOffsetsMax (past it the drain stops: G's offsets were moved back, or another
 * writer mimics the drain's headers).
 */
import { InvalidArgumentError, SpillwayError } from '../errors.js';
import { drainResumeOffsetsMax } from '../limits.js';
import type { GroupDescription } from '../protocol/group-api.js';
import { partitionForKey } from '../protocol/partitioner.js';
import { drainGroupHeader, drainSourceHeader } from '../protocol/reserved-headers.js';
import type { GroupConsumer } from './group-consumer.js';
import type { ConsumedMessage } from './message.js';
import type { MessageBytes } from './producer.js';
import type { Spillway } from './spillway.js';

export interface DrainOptions {
  /** The topic whose backlog is moved. */
  source: string;
  /** The group whose committed offsets of `source` define the backlog, and get committed. */
  group: string;
  /** The target topic (created when missing). */
  into: string;
  /** The target's partition count (an existing target must have exactly this many). */
  partitions: number;
  /** Called about every `progressIntervalMs` and once at the end. */
  onProgress?: (progress: DrainProgress) => void;
  /** Default 200. */
  progressIntervalMs?: number;
  /** Aborting stops taking messages: copies in flight are awaited and committed, then the drain returns. */
  signal?: AbortSignal;
  /** Copies not yet acknowledged at once. Default 65 536. */
  inFlightMessagesMax?: number;
}

export interface DrainProgress {
  /** Messages of the backlog when the drain started (after what earlier runs committed). */
  total: number;
  /** Copied into the target by this run. */
  copied: number;
  /** Found already copied by an earlier run (resume) and not copied again. */
  skipped: number;
}

export interface DrainResult extends DrainProgress {
  source: string;
  group: string;
  into: string;
  partitions: number;
  /** Whether the target was created by this run. */
  created: boolean;
  /** True when the signal stopped the drain before the end: a next run goes on from there. */
  interrupted: boolean;
  /** Per source partition: the backlog drained, [from, to). */
  ranges: Array<{ partition: number; from: number; to: number }>;
  durationMs: number;
}

export const drainDefaults = {
  progressIntervalMs: 200,
  inFlightMessagesMax: 65_536,
  /** Batch size of the copies (larger batches: fewer round trips with one batch in flight per partition). */
  batchBytes: 256 * 1024,
} as const;

/** `<topic>:<partition>:<offset>`, the value of the sw-drain-source header. */
export function drainSourceValue(topic: string, partition: number, offset: number): string {
  return `${topic}:${partition}:${offset}`;
}

/** Reads a sw-drain-source value; null when it is not one. */
export function parseDrainSource(value: string): { topic: string; partition: number; offset: number } | null {
  const last = value.lastIndexOf(':');
  const middle = last > 0 ? value.lastIndexOf(':', last - 1) : -1;
  if (middle <= 0) return null;
  const partition = Number(value.slice(middle + 1, last));
  const offset = Number(value.slice(last + 1));
  if (!Number.isSafeInteger(partition) || partition < 0 || !Number.isSafeInteger(offset) || offset < 0)
    return null;
  return { topic: value.slice(0, middle), partition, offset };
}

function aborted(signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true;
}

function text(bytes: Buffer | null | undefined): string | null {
  return bytes === null || bytes === undefined ? null : bytes.toString('utf8');
}

async function describeGroupOrNull(sw: Spillway, group: string): Promise<GroupDescription | null> {
  try {
    return await sw.admin.describeGroup(group);
  } catch (error) {
    if ((error as { code?: unknown }).code === 'UNKNOWN_GROUP') return null;
    throw error;
  }
}

function validate(options: DrainOptions): void {
  for (const name of ['source', 'group', 'into'] as const) {
    if (typeof options[name] !== 'string' || options[name].length === 0)
      throw new InvalidArgumentError(`drain option ${name} must be a non-empty string`);
  }
  if (options.source === options.into)
    throw new InvalidArgumentError('the drain target must be another topic than the source');
  if (!Number.isSafeInteger(options.partitions) || options.partitions < 1)
    throw new InvalidArgumentError(
      `drain option partitions must be an integer >= 1, got ${options.partitions}`,
    );
  const window = options.inFlightMessagesMax;
  if (window !== undefined && (!Number.isSafeInteger(window) || window < 1))
    throw new InvalidArgumentError(`drain option inFlightMessagesMax must be an integer >= 1, got ${window}`);
}

/**
 * Checks that `group` may be drained: not a shared/key_shared or broadcast group, no live members.
 * Returns its committed offsets of `source` by partition (absent: none committed).
 */
async function checkGroup(sw: Spillway, source: string, group: string): Promise<Map<number, number>> {
  const description = await describeGroupOrNull(sw, group);
  if (description === null) {
    const queues = await sw.admin.describeQueues(group);
    if (queues.length > 0) {
      throw new InvalidArgumentError(
        `group '${group}' is a ${queues[0]!.mode} group: drain moves the backlog of a group-mode group (committed offsets)`,
      );
    }
    return new Map();
  }
  if (description.mode !== 'group') {
    throw new InvalidArgumentError(
      `group '${group}' is a ${description.mode} group: drain moves the backlog of a group-mode group`,
    );
  }
  if (description.members.length > 0) {
    throw new SpillwayError(
      'GROUP_NOT_EMPTY',
      `group '${group}' has ${description.members.length} live member(s): stop its consumers before draining its backlog (they must not consume '${source}' meanwhile)`,
    );
  }
  const committed = new Map<number, number>();
  for (const row of description.partitions) {
    if (row.topic === source && row.committed !== null) committed.set(row.partition, row.committed);
  }
  return committed;
}

/** Creates the target when missing; checks its partition count otherwise. */
async function ensureTarget(
  sw: Spillway,
  options: DrainOptions,
  durability: string,
): Promise<{ created: boolean }> {
  try {
    await sw.admin.createTopic(options.into, {
      partitions: options.partitions,
      durability: durability as 'none' | 'interval' | 'always',
    });
    return { created: true };
  } catch (error) {
    if ((error as { code?: unknown }).code !== 'TOPIC_EXISTS') throw error;
  }
  const target = await sw.admin.describeTopic(options.into);
  if (target.partitionCount !== options.partitions) {
    throw new InvalidArgumentError(
      `topic '${options.into}' exists with ${target.partitionCount} partitions, not ${options.partitions}: a key's partition depends on the count, so a drain goes on into the same count`,
    );
  }
  return { created: false };
}

/**
 * Reads the target to its current end and returns, per source partition, the source offsets at or
 * above `floor` (G's committed offsets) that copies for (source, group) already carry.
 */
async function copiedAboveFloor(
  sw: Spillway,
  options: DrainOptions,
  floors: ReadonlyMap<number, number>,
): Promise<Map<number, Set<number>>> {
  const copied = new Map<number, Set<number>>();
  const ends: number[] = [];
  let pending = 0;
  for (let partition = 0; partition < options.partitions; partition++) {
    const [start, end] = await Promise.all([
      sw.admin.listOffset(options.into, partition, 'earliest'),
      sw.admin.listOffset(options.into, partition, 'latest'),
    ]);
    ends.push(end);
    if (end > start) pending++;
  }
  if (pending === 0) return copied;
  const reader = sw.consumer({ topics: [options.into], from: 'earliest', maxWaitMs: 100 });
  let count = 0;
  try {
    for await (const message of reader) {
      const end = ends[message.partition]!;
      if (message.offset < end) {
        const source = text(message.headers[drainSourceHeader]);
        const parsed = source === null ? null : parseDrainSource(source);
        if (
          parsed !== null &&
          parsed.topic === options.source &&
          text(message.headers[drainGroupHeader]) === options.group &&
          parsed.offset >= (floors.get(parsed.partition) ?? 0)
        ) {
          let offsets = copied.get(parsed.partition);
          if (offsets === undefined) {
            offsets = new Set();
            copied.set(parsed.partition, offsets);
          }
          if (!offsets.has(parsed.offset) && ++count > drainResumeOffsetsMax) {
            throw new SpillwayError(
              'INVALID_ARGUMENT',
              `'${options.into}' holds more than ${drainResumeOffsetsMax} copies of '${options.source}' above group '${options.group}''s committed offsets: were the group's offsets moved back? Drain into a new topic`,
            );
          }
          offsets.add(parsed.offset);
        }
      }
      if (message.offset >= end - 1 && --pending === 0) break;
    }
  } finally {
    await reader.close();
  }
  return copied;
}

/** The earliest offset of each source partition without a committed offset. */
async function backlogStarts(
  sw: Spillway,
  source: string,
  partitionCount: number,
  committed: ReadonlyMap<number, number>,
): Promise<{ starts: number[]; ends: number[] }> {
  const starts: number[] = [];
  const ends: number[] = [];
  for (let partition = 0; partition < partitionCount; partition++) {
    const [earliest, latest] = await Promise.all([
      sw.admin.listOffset(source, partition, 'earliest'),
      sw.admin.listOffset(source, partition, 'latest'),
    ]);
    ends.push(latest);
    starts.push(Math.min(latest, Math.max(earliest, committed.get(partition) ?? earliest)));
  }
  return { starts, ends };
}

/** Fails once the drain's member no longer holds every source partition (another member joined). */
function checkAssignment(consumer: GroupConsumer, options: DrainOptions, partitionCount: number): void {
  const held = consumer
    .assignment()
    .filter((row) => row.topic === options.source && !row.revoking && row.partition < partitionCount);
  if (held.length < partitionCount) {
    throw new SpillwayError(
      'GROUP_NOT_EMPTY',
      `another member joined group '${options.group}' during the drain: stop it, then run the drain again (it resumes)`,
    );
  }
}

/** Moves group `options.group`'s backlog of `options.source` into `options.into`. See the file header. */
export async function drainBacklog(sw: Spillway, options: DrainOptions): Promise<DrainResult> {
  validate(options);
  const startedAt = Date.now();
  const window = options.inFlightMessagesMax ?? drainDefaults.inFlightMessagesMax;
  const source = await sw.admin.describeTopic(options.source);
  const committed = await checkGroup(sw, options.source, options.group);
  const { created } = await ensureTarget(sw, options, source.config.durability);
  const partitionCount = source.partitionCount;
  const { starts, ends } = await backlogStarts(sw, options.source, partitionCount, committed);
  const copiedBefore = created
    ? new Map<number, Set<number>>()
    : await copiedAboveFloor(sw, options, new Map(starts.map((start, partition) => [partition, start])));
  const progress: DrainProgress = { total: 0, copied: 0, skipped: 0 };
  for (let partition = 0; partition < partitionCount; partition++)
    progress.total += ends[partition]! - starts[partition]!;
  const ranges = starts.map((from, partition) => ({ partition, from, to: ends[partition]! }));
  const result = (interrupted: boolean): DrainResult => ({
    source: options.source,
    group: options.group,
    into: options.into,
    partitions: options.partitions,
    created,
    interrupted,
    ranges,
    durationMs: Date.now() - startedAt,
    ...progress,
  });
  let remaining = ranges.filter((range) => range.to > range.from).length;
  if (remaining === 0 || options.signal?.aborted === true) {
    options.onProgress?.({ ...progress });
    return result(options.signal?.aborted === true && remaining > 0);
  }

  const consumer = sw.consumer({ group: options.group, topics: [options.source], from: 'earliest' });
  const producer = sw.producer({
    retries: 0,
    inFlightBatchesPerPartitionMax: 1,
    lingerMs: 1,
    batchBytes: drainDefaults.batchBytes,
  });
  const done = new Array<boolean>(partitionCount).fill(false);
  for (const range of ranges) done[range.partition] = range.to <= range.from;
  const inFlight: Array<Promise<void>> = [];
  let inFlightHead = 0;
  let failure: unknown = null;
  let spread = 0;
  let progressTimer: NodeJS.Timeout | null = null;
  try {
    await consumer.ready();
    checkAssignment(consumer, options, partitionCount);
    if (options.onProgress !== undefined) {
      const report = options.onProgress;
      progressTimer = setInterval(
        () => report({ ...progress }),
        options.progressIntervalMs ?? drainDefaults.progressIntervalMs,
      );
      progressTimer.unref();
    }
    let checkedAt = Date.now();
    while (remaining > 0 && failure === null && !aborted(options.signal)) {
      // While a partition has backlog left, a message is always coming: no need to race the signal.
      const next = await consumer.next();
      if (next.done === true) break;
      const message = next.value;
      const partition = message.partition;
      if (partition >= partitionCount || done[partition]) continue; // past the end taken at start
      const end = ends[partition]!;
      if (message.offset >= end) continue;
      if (message.offset >= end - 1) {
        done[partition] = true;
        remaining--;
      }
      if (copiedBefore.get(partition)?.has(message.offset) === true) {
        progress.skipped++;
        await message.ack();
      } else {
        inFlight.push(copy(message));
        if (inFlight.length - inFlightHead >= window) {
          await inFlight[inFlightHead++];
          if (inFlightHead > 4096) {
            inFlight.splice(0, inFlightHead);
            inFlightHead = 0;
          }
        }
      }
      const now = Date.now();
      if (now - checkedAt >= 500) {
        checkedAt = now;
        checkAssignment(consumer, options, partitionCount);
      }
    }
    await producer.flush();
    await Promise.all(inFlight.slice(inFlightHead));
    if (failure !== null) throw failure;
  } finally {
    if (progressTimer !== null) clearInterval(progressTimer);
    await producer.close().catch(() => undefined);
    await consumer.close(); // commits the acked prefix, then leaves the group
  }
  options.onProgress?.({ ...progress });
  const interrupted = remaining > 0;
  if (!interrupted) await checkCommitted(sw, options, ranges);
  return result(interrupted);

  function copy(message: ConsumedMessage): Promise<void> {
    const headers: Record<string, MessageBytes | null> = {};
    for (const [name, value] of Object.entries(message.headers)) headers[name] = value;
    headers[drainSourceHeader] = drainSourceValue(options.source, message.partition, message.offset);
    headers[drainGroupHeader] = options.group;
    const partition =
      message.key === null ? spread++ % options.partitions : partitionForKey(message.key, options.partitions);
    return producer
      .send(options.into, {
        key: message.key,
        value: message.value,
        headers,
        timestamp: message.timestamp,
        partition,
      })
      .then(
        () => {
          progress.copied++;
          return message.ack();
        },
        (error: unknown) => {
          failure ??= error;
        },
      );
  }
}

/** After a complete drain: G's committed offsets of the source must have reached the end offsets. */
async function checkCommitted(
  sw: Spillway,
  options: DrainOptions,
  ranges: ReadonlyArray<{ partition: number; from: number; to: number }>,
): Promise<void> {
  const description = await describeGroupOrNull(sw, options.group);
  for (const range of ranges) {
    if (range.to <= range.from) continue; // nothing to drain there
    const row = description?.partitions.find(
      (p) => p.topic === options.source && p.partition === range.partition,
    );
    if ((row?.committed ?? -1) < range.to) {
      throw new SpillwayError(
        'INTERNAL',
        `the drain copied everything but group '${options.group}''s committed offset of ${options.source}/${range.partition} is ${row?.committed ?? 'none'}, not ${range.to}: run the drain again (it skips what was copied)`,
      );
    }
  }
}
