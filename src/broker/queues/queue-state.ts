/**
 * The state machine of the internal state log `__queue_state` (docs/STATE.md): the AckState
 * (ack-state.ts) of every queue partition, i.e. of every (group, topic, partition) consumed in shared
 * or key_shared mode. Entries, one record each (key = the queue partition's key, value = msgpack):
 *
 *   delivered   { t: 'd', r: [from, to, ...] }          one more delivery of each offset in the ranges
 *   settled     { t: 's', r: [from, to, ...] }          acked (or dead-lettered): never delivered again
 *   retry       { t: 'r', o: offset, at: ms, e: text }  failed; not delivered again before `at` (wall ms)
 *   gone        { t: 'g', to: offset }                  the partition's log start moved to `to`
 *                                                        (retention): everything below is settled
 *                                                        without delivery, the unsettled counted skipped
 *   state       { t: 'S', f: floor, s: [...], c: [...], y: [[o, at, e], ...], k?: skipped }   the whole
 *                                                        AckState (snapshot entries; AckStateData)
 *   dropped     null (a tombstone)                       the topic was deleted: the state is gone
 *
 * and, keyed by a queue group `group NUL topic` (queueGroupKey), for retention (broker-queues.ts):
 *
 *   idle        { t: 'i', at: ms | null }               the group has had no members (and no HTTP
 *                                                        use) since `at` (wall ms); null: in use again
 *   forgotten   null (a tombstone)                       the group was idle for groupRetentionMs (or
 *                                                        its topic was deleted): the state of all its
 *                                                        partitions is gone
 *   topic       { t: 'T', c: createdAtMs }               the incarnation of the topic the group's state
 *                                                        is about (the topic's createdAtMs): a topic
 *                                                        created again with the name is another one
 *
 * The key of a queue partition: `group NUL topic NUL partition` (queuePartitionKey). Entries are
 * validated when decoded (they come from disk) and by the broker before it commits them.
 */
import { InvalidArgumentError } from '../../errors.js';
import { type EntryCodec, type StateMachine, statePackr } from '../state/state-machine.js';
import { AckState, type AckStateData } from './ack-state.js';

export type QueueEntry =
  | { type: 'delivered'; queue: string; ranges: number[] }
  | { type: 'settled'; queue: string; ranges: number[] }
  | { type: 'retry'; queue: string; offset: number; atMs: number; error: string }
  | { type: 'gone'; queue: string; to: number }
  | { type: 'state'; queue: string; data: AckStateData }
  | { type: 'dropped'; queue: string }
  | { type: 'idle'; group: string; sinceMs: number | null }
  | { type: 'forgotten'; group: string }
  | { type: 'topic'; group: string; createdAtMs: number };

/** The key of a queue group: `group NUL topic` (groups and topics never contain NUL). */
export function queueGroupKey(group: string, topic: string): string {
  return `${group}\u0000${topic}`;
}

/** The queue group key of a queue partition key (everything before the last NUL). */
export function queueGroupKeyOf(queue: string): string {
  return queue.slice(0, queue.lastIndexOf('\u0000'));
}

/** The (group, topic) of a queue group key. */
export function parseQueueGroupKey(key: string): { group: string; topic: string } {
  const parts = key.split('\u0000');
  if (parts.length !== 2 || parts[0]!.length === 0) {
    throw new Error(`bad queue group key ${JSON.stringify(key)}`);
  }
  return { group: parts[0]!, topic: parts[1]! };
}

/** What the machine knows of one queue group: its partitions' keys and since when it is idle. */
export interface QueueGroupRecord {
  readonly queues: Set<string>;
  /** Wall ms since when the group has been idle (durable); null: in use, or not recorded. */
  idleSinceMs: number | null;
  /** createdAtMs of the topic its state is about; null: not recorded (state of before the record). */
  topicCreatedAtMs: number | null;
}

export function queuePartitionKey(group: string, topic: string, partition: number): string {
  return `${group}\u0000${topic}\u0000${partition}`;
}

/** The (group, topic, partition) of a queue partition key. */
export function parseQueuePartitionKey(key: string): { group: string; topic: string; partition: number } {
  const parts = key.split('\u0000');
  const partition = Number(parts[2]);
  if (parts.length !== 3 || !Number.isSafeInteger(partition) || partition < 0) {
    throw new Error(`bad queue partition key ${JSON.stringify(key)}`);
  }
  return { group: parts[0]!, topic: parts[1]!, partition };
}

export class QueueStateMachine implements StateMachine<QueueEntry> {
  private readonly queues = new Map<string, AckState>();
  /** Queue group key -> its partitions known here and its idle time. */
  private readonly groupRecords = new Map<string, QueueGroupRecord>();

  /** The AckState of a queue partition, created empty (floor 0) when unknown. */
  stateOf(queue: string): AckState {
    let state = this.queues.get(queue);
    if (state === undefined) {
      state = new AckState();
      this.setState(queue, state);
    }
    return state;
  }

  /** Every queue partition known, by key (read-only). */
  view(): ReadonlyMap<string, AckState> {
    return this.queues;
  }

  /** Every queue group known (with state or an idle time), by queue group key (read-only). */
  groups(): ReadonlyMap<string, QueueGroupRecord> {
    return this.groupRecords;
  }

  private recordOf(group: string): QueueGroupRecord {
    let record = this.groupRecords.get(group);
    if (record === undefined) {
      record = { queues: new Set(), idleSinceMs: null, topicCreatedAtMs: null };
      this.groupRecords.set(group, record);
    }
    return record;
  }

  private setState(queue: string, state: AckState): void {
    this.queues.set(queue, state);
    this.recordOf(queueGroupKeyOf(queue)).queues.add(queue);
  }

  private deleteState(queue: string): void {
    this.queues.delete(queue);
    const group = queueGroupKeyOf(queue);
    const record = this.groupRecords.get(group);
    if (record === undefined) return;
    record.queues.delete(queue);
    if (record.queues.size === 0 && record.topicCreatedAtMs === null) this.groupRecords.delete(group);
  }

  apply(entry: QueueEntry): void {
    switch (entry.type) {
      case 'delivered': {
        const state = this.stateOf(entry.queue);
        const ranges = entry.ranges;
        for (let i = 0; i < ranges.length; i += 2) {
          for (let offset = ranges[i]!; offset < ranges[i + 1]!; offset++) state.delivered(offset);
        }
        return;
      }
      case 'settled': {
        const state = this.stateOf(entry.queue);
        const ranges = entry.ranges;
        for (let i = 0; i < ranges.length; i += 2) state.settle(ranges[i]!, ranges[i + 1]!);
        return;
      }
      case 'retry':
        this.stateOf(entry.queue).scheduleRetry(entry.offset, entry.atMs, entry.error);
        return;
      case 'gone':
        this.stateOf(entry.queue).skipTo(entry.to);
        return;
      case 'state':
        this.setState(entry.queue, AckState.fromData(entry.data));
        return;
      case 'dropped':
        this.deleteState(entry.queue);
        return;
      case 'idle': {
        const record = this.recordOf(entry.group);
        record.idleSinceMs = entry.sinceMs;
        if (entry.sinceMs === null && record.queues.size === 0 && record.topicCreatedAtMs === null)
          this.groupRecords.delete(entry.group);
        return;
      }
      case 'topic':
        this.recordOf(entry.group).topicCreatedAtMs = entry.createdAtMs;
        return;
      case 'forgotten': {
        const record = this.groupRecords.get(entry.group);
        if (record === undefined) return;
        for (const queue of record.queues) this.queues.delete(queue);
        this.groupRecords.delete(entry.group);
        return;
      }
    }
  }

  *snapshot(): Iterable<QueueEntry> {
    for (const [queue, state] of this.queues) yield { type: 'state', queue, data: state.toData() };
    for (const [group, record] of this.groupRecords) {
      if (record.idleSinceMs !== null) yield { type: 'idle', group, sinceMs: record.idleSinceMs };
      if (record.topicCreatedAtMs !== null)
        yield { type: 'topic', group, createdAtMs: record.topicCreatedAtMs };
    }
  }

  reset(): void {
    this.queues.clear();
    this.groupRecords.clear();
  }
}

function isOffset(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

/** Checks flat [from, to) ranges: offsets, from <= to. */
export function checkRanges(value: unknown, what: string): number[] {
  if (!Array.isArray(value) || value.length % 2 !== 0) {
    throw new InvalidArgumentError(`${what} must be a flat list of [from, to) pairs`);
  }
  for (let i = 0; i < value.length; i += 2) {
    if (!isOffset(value[i]) || !isOffset(value[i + 1]) || value[i] > value[i + 1]) {
      throw new InvalidArgumentError(`${what}: pair ${i / 2} is not offsets with from <= to`);
    }
  }
  return value as number[];
}

function checkStateData(fields: Record<string, unknown>): AckStateData {
  const floor = fields['f'];
  if (!isOffset(floor)) throw new Error('queue state floor is not an offset');
  const settled = checkRanges(fields['s'], 'queue state settled');
  const counts = fields['c'];
  if (!Array.isArray(counts) || counts.length % 2 !== 0 || !counts.every(isOffset)) {
    throw new Error('queue state counts are not offset/count pairs');
  }
  const retries = fields['y'];
  if (
    !Array.isArray(retries) ||
    !retries.every(
      (retry) =>
        Array.isArray(retry) &&
        retry.length === 3 &&
        isOffset(retry[0]) &&
        isOffset(retry[1]) &&
        typeof retry[2] === 'string',
    )
  ) {
    throw new Error('queue state retries are not [offset, atMs, error] triples');
  }
  const skipped = fields['k'];
  if (skipped !== undefined && !isOffset(skipped)) throw new Error('queue state skipped is not a count');
  const data: AckStateData = {
    floor,
    settled,
    counts: counts as number[],
    retries: retries as Array<[number, number, string]>,
  };
  if (skipped !== undefined) data.skipped = skipped;
  return data;
}

export const queueStateCodec: EntryCodec<QueueEntry> = {
  encode(entry) {
    let value: unknown = null;
    switch (entry.type) {
      case 'dropped':
        break;
      case 'idle':
        return { key: entry.group, value: statePackr.pack({ t: 'i', at: entry.sinceMs }) };
      case 'forgotten':
        return { key: entry.group, value: null };
      case 'topic':
        return { key: entry.group, value: statePackr.pack({ t: 'T', c: entry.createdAtMs }) };
      case 'gone':
        value = { t: 'g', to: entry.to };
        break;
      case 'delivered':
        value = { t: 'd', r: entry.ranges };
        break;
      case 'settled':
        value = { t: 's', r: entry.ranges };
        break;
      case 'retry':
        value = { t: 'r', o: entry.offset, at: entry.atMs, e: entry.error };
        break;
      case 'state': {
        const { floor, settled, counts, retries, skipped } = entry.data;
        value =
          skipped === undefined
            ? { t: 'S', f: floor, s: settled, c: counts, y: retries }
            : { t: 'S', f: floor, s: settled, c: counts, y: retries, k: skipped };
        break;
      }
    }
    return { key: entry.queue, value: value === null ? null : statePackr.pack(value) };
  },
  decode(record) {
    const queue = record.keyText();
    const bytes = record.value();
    if (queue === null) throw new Error('queue state entry without key');
    if (queue.split('\u0000').length === 2) {
      // A queue group's entry: idle time, topic incarnation or forgotten.
      parseQueueGroupKey(queue);
      if (bytes === null) return { type: 'forgotten', group: queue };
      const value: unknown = statePackr.unpack(bytes);
      if ((value as Record<string, unknown> | null)?.['t'] === 'T') {
        const createdAtMs = (value as Record<string, unknown>)['c'];
        if (!isOffset(createdAtMs)) throw new Error('queue group topic entry is not { t: "T", c: ms }');
        return { type: 'topic', group: queue, createdAtMs };
      }
      const at = (value as Record<string, unknown> | null)?.['at'];
      if ((value as Record<string, unknown> | null)?.['t'] !== 'i' || (at !== null && !isOffset(at))) {
        throw new Error('queue group entry is not { t: "i", at: ms | null }');
      }
      return { type: 'idle', group: queue, sinceMs: at };
    }
    parseQueuePartitionKey(queue);
    if (bytes === null) return { type: 'dropped', queue };
    const value: unknown = statePackr.unpack(bytes);
    if (typeof value !== 'object' || value === null) throw new Error('queue state entry is not a map');
    const fields = value as Record<string, unknown>;
    switch (fields['t']) {
      case 'd':
        return { type: 'delivered', queue, ranges: checkRanges(fields['r'], 'delivered') };
      case 's':
        return { type: 'settled', queue, ranges: checkRanges(fields['r'], 'settled') };
      case 'r': {
        const { o: offset, at: atMs, e: error } = fields;
        if (!isOffset(offset) || !isOffset(atMs) || typeof error !== 'string') {
          throw new Error('queue retry entry needs o, at and e');
        }
        return { type: 'retry', queue, offset, atMs, error };
      }
      case 'g': {
        const to = fields['to'];
        if (!isOffset(to)) throw new Error('queue gone entry needs to');
        return { type: 'gone', queue, to };
      }
      case 'S':
        return { type: 'state', queue, data: checkStateData(fields) };
      default:
        throw new Error(`unknown queue state entry type ${JSON.stringify(fields['t'])}`);
    }
  },
};
