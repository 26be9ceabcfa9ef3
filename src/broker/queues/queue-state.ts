/**
 * The state machine of the internal state log `__queue_state` (docs/STATE.md): the AckState
 * (ack-state.ts) of every queue partition, i.e. of every (group, topic, partition) consumed in shared
 * or key_shared mode. Entries, one record each (key = the queue partition's key, value = msgpack):
 *
 *   delivered   { t: 'd', r: [from, to, ...] }          one more delivery of each offset in the ranges
 *   settled     { t: 's', r: [from, to, ...] }          acked (or dead-lettered): never delivered again
 *   retry       { t: 'r', o: offset, at: ms, e: text }  failed; not delivered again before `at` (wall ms)
 *   state       { t: 'S', f: floor, s: [...], c: [...], y: [[o, at, e], ...] }   the whole AckState
 *                                                        (snapshot entries; AckStateData)
 *   dropped     null (a tombstone)                       the topic was deleted: the state is gone
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
  | { type: 'state'; queue: string; data: AckStateData }
  | { type: 'dropped'; queue: string };

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

  /** The AckState of a queue partition, created empty (floor 0) when unknown. */
  stateOf(queue: string): AckState {
    let state = this.queues.get(queue);
    if (state === undefined) {
      state = new AckState();
      this.queues.set(queue, state);
    }
    return state;
  }

  /** Every queue partition known, by key (read-only). */
  view(): ReadonlyMap<string, AckState> {
    return this.queues;
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
      case 'state':
        this.queues.set(entry.queue, AckState.fromData(entry.data));
        return;
      case 'dropped':
        this.queues.delete(entry.queue);
        return;
    }
  }

  *snapshot(): Iterable<QueueEntry> {
    for (const [queue, state] of this.queues) yield { type: 'state', queue, data: state.toData() };
  }

  reset(): void {
    this.queues.clear();
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
  return { floor, settled, counts: counts as number[], retries: retries as Array<[number, number, string]> };
}

export const queueStateCodec: EntryCodec<QueueEntry> = {
  encode(entry) {
    let value: unknown = null;
    switch (entry.type) {
      case 'dropped':
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
        const { floor, settled, counts, retries } = entry.data;
        value = { t: 'S', f: floor, s: settled, c: counts, y: retries };
        break;
      }
    }
    return { key: entry.queue, value: value === null ? null : statePackr.pack(value) };
  },
  decode(record) {
    const queue = record.keyText();
    const bytes = record.value();
    if (queue === null) throw new Error('queue state entry without key');
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
      case 'S':
        return { type: 'state', queue, data: checkStateData(fields) };
      default:
        throw new Error(`unknown queue state entry type ${JSON.stringify(fields['t'])}`);
    }
  },
};
