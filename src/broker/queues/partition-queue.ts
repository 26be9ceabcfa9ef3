/**
 * One queue partition at run time: a group consuming one topic partition in shared or key_shared
 * mode. Its durable part is the AckState in `__queue_state` (ack-state.ts, read through `ack()`); this
 * class adds what lives only while the broker runs:
 *
 *   cursor      the next offset never handed out since the broker started (starts at the ack floor:
 *               after a restart everything unsettled is delivered again)
 *   inFlight    offset -> delivery awaiting its ack (member session, lease, deadline)
 *   ready       sorted offsets below the cursor, unsettled, not in flight, deliverable now
 *               (timed out, released by a closed session, retry time reached, or a key_shared
 *               message passed over because its key is with another member)
 *   scheduled   offsets below the cursor waiting for their retry time
 *   settling    offsets whose ack (or dead letter) is being written: never handed out again
 *   keys        key_shared only: per key, the member holding it and its in-flight and waiting offsets
 *
 * Window: only offsets below `ack floor + queueUnackedPerPartitionMax` are handed out.
 *
 * Retention: offsets below the source's `logStartOffset` are gone from the partition. `skipGone`
 * (called before every collect) takes them out of every list above (in-flight deliveries end: their
 * acks find nothing) and moves the cursor to the log start; they count as settled at once
 * (`goneBelow`), durably once BrokerQueues' `gone` entry applies (AckState.skipTo).
 *
 * key_shared rule: a key is with one member at a time. A message of key K goes to member M only when
 * every earlier unsettled message of K is in flight with M (so K's messages are delivered in order and
 * never to two members at once); when K has nothing in flight, K goes to the member its hash picks among
 * the current members. So a key moves to another member only once its in-flight messages are acked,
 * nacked or expired. Messages with a null key are not ordered: any member gets them.
 *
 * Everything runs on the broker's event loop; BrokerQueues (broker-queues.ts) drives it.
 */
import { assert } from '../../assert.js';
import { batchBaseOffset, batchLengthAt, batchRecordCountAt } from '../../format/batch-header.js';
import { RecordCursor } from '../../format/record-batch.js';
import { queueUnackedPerPartitionMax } from '../../limits.js';
import { murmur2 } from '../../protocol/partitioner.js';
import type { QueueMode } from '../../protocol/queue-api.js';
import type { AckState } from './ack-state.js';
import type { OpenedQueueSource } from './queue-partition-source.js';

export interface InFlightDelivery {
  member: number;
  lease: number;
  /** Monotonic ms. */
  deadlineMs: number;
  deliveryCount: number;
  /** key_shared: the message's key as text (latin1 of its bytes); null for a null key or in shared mode. */
  key: string | null;
  /** The deliveries handed out together (one deadline), for the deadline timer. */
  batch: DeliveryBatch;
}

/**
 * Deliveries handed out by one collect, sharing a deadline: one timer-heap entry for all of them.
 * `live` counts those still in flight; at 0 the lists are dropped (the heap entry stays, empty, until due).
 */
export interface DeliveryBatch {
  deadlineMs: number;
  offsets: number[] | null;
  leases: number[] | null;
  live: number;
}

interface KeyState {
  /** Member holding the key while it has messages in flight. */
  owner: number;
  inFlight: number;
  /** Unsettled offsets of the key below the cursor, not in flight (ready or scheduled), sorted. */
  waiting: number[];
}

/** What one collect took from the partition. */
export interface Collected {
  /** Batches holding the offsets (each once). */
  records: Uint8Array[];
  /** Parallel lists, one entry per delivery. */
  offsets: number[];
  deliveryCounts: number[];
  leases: number[];
  batch: DeliveryBatch;
}

const emptyKeys: readonly number[] = [];

function insertSorted(list: number[], value: number): void {
  let low = 0;
  let high = list.length;
  if (high === 0 || list[high - 1]! < value) {
    list.push(value);
    return;
  }
  while (low < high) {
    const middle = (low + high) >> 1;
    if (list[middle]! < value) low = middle + 1;
    else high = middle;
  }
  if (list[low] !== value) list.splice(low, 0, value);
}

function removeSorted(list: number[], value: number): boolean {
  let low = 0;
  let high = list.length;
  while (low < high) {
    const middle = (low + high) >> 1;
    if (list[middle]! < value) low = middle + 1;
    else high = middle;
  }
  if (list[low] !== value) return false;
  list.splice(low, 1);
  return true;
}

export class PartitionQueue {
  readonly key: string;
  /** Where its batches are read (queue-partition-source.ts): the local partition, or a remote reader. */
  readonly partition: OpenedQueueSource;
  readonly mode: QueueMode;
  cursor: number;
  readonly inFlight = new Map<number, InFlightDelivery>();
  readonly ready: number[] = [];
  /** Offset -> monotonic due time. */
  readonly scheduled = new Map<number, number>();
  readonly settling = new Set<number>();
  /** Offsets below this are gone from the partition (retention): settled (`skipGone`). */
  goneBelow = 0;
  /** Offsets skipped whose `gone` entry is not applied yet (describe adds them to the durable count). */
  skippedPending = 0;
  /** Delivery counts of offsets not in flight (ready, scheduled): the AckState's may lag behind. */
  private readonly counts = new Map<number, number>();
  /** key_shared: keys of the offsets below the cursor that are unsettled and not in flight. */
  private readonly waitingKeys = new Map<number, string | null>();
  private readonly keys = new Map<string, KeyState>();
  private readonly ackOf: () => AckState;
  /**
   * The AckState object, looked up again at each collect: the machine replaces it when recovery
   * applies a snapshot and drops it when its topic is deleted (the drop applies once durable).
   */
  private ackState: AckState;

  constructor(key: string, partition: OpenedQueueSource, mode: QueueMode, ackOf: () => AckState) {
    this.key = key;
    this.partition = partition;
    this.mode = mode;
    this.ackOf = ackOf;
    this.ackState = ackOf();
    this.cursor = this.ackState.floor;
  }

  /** The durable state. */
  ack(): AckState {
    return this.ackState;
  }

  isSettled(offset: number): boolean {
    return (
      offset < this.goneBelow ||
      (this.settling.size > 0 && this.settling.has(offset)) ||
      this.ackState.isSettled(offset)
    );
  }

  /** Times `offset` was delivered (in flight: counting that delivery). */
  deliveryCount(offset: number): number {
    const delivery = this.inFlight.get(offset);
    if (delivery !== undefined) return delivery.deliveryCount;
    if (this.counts.size > 0) {
      const count = this.counts.get(offset);
      if (count !== undefined) return count;
    }
    return this.ackState.deliveryCount(offset);
  }

  /** True when nothing can be handed out right now (a receive would come back empty). */
  get windowEnd(): number {
    return this.ackState.floor + queueUnackedPerPartitionMax;
  }

  /**
   * Takes up to `max` deliverable messages for `member`: ready ones first (lowest offset first), then
   * new ones from the cursor. `members` (sorted session ids) decides key ownership in key_shared.
   * `onSchedule(offset, atMs)` is told about offsets found with a retry time still ahead.
   */
  collect(
    member: number,
    members: readonly number[],
    max: number,
    maxBytes: number,
    deadlineMs: number,
    nextLease: () => number,
    nowWallMs: number,
    nowMonotonicMs: number,
    onSchedule: (offset: number, dueMonotonicMs: number) => void,
  ): Collected {
    this.ackState = this.ackOf();
    const batch: DeliveryBatch = { deadlineMs, offsets: [], leases: [], live: 0 };
    const collected: Collected = {
      records: [],
      offsets: batch.offsets!,
      deliveryCounts: [],
      leases: batch.leases!,
      batch,
    };
    const batchBases = new Set<number>();
    const blocked = this.mode === 'key_shared' ? new Set<string>() : null;
    const take = (offset: number, key: string | null): void => {
      const deliveryCount = this.deliveryCount(offset) + 1;
      const lease = nextLease();
      this.inFlight.set(offset, { member, lease, deadlineMs, deliveryCount, key, batch });
      collected.offsets.push(offset);
      collected.leases.push(lease);
      collected.deliveryCounts.push(deliveryCount);
      batch.live++;
      if (key !== null) {
        const state = this.keyState(key);
        state.owner = member;
        state.inFlight++;
      }
    };
    /** Adds the batch holding `offset` once; false when the source does not have it now (it waits). */
    const addBatchOf = (offset: number): boolean => {
      const read = this.partition.read(offset, 1);
      if (read.batchCount === 0) return false;
      const base = batchBaseOffset(read.records, 0);
      if (batchBases.has(base)) return true;
      batchBases.add(base);
      collected.records.push(read.records.subarray(0, batchLengthAt(read.records, 0)));
      return true;
    };

    // 1. Ready offsets, lowest first.
    const windowEnd = this.windowEnd;
    for (let i = 0; i < this.ready.length && collected.offsets.length < max; ) {
      const offset = this.ready[i]!;
      if (offset >= windowEnd) break;
      if (this.isSettled(offset)) {
        this.ready.splice(i, 1);
        this.forgetWaiting(offset);
        continue;
      }
      const key = this.waitingKeys.get(offset) ?? null;
      if (blocked !== null && key !== null && !this.mayTake(key, offset, member, members, blocked)) {
        i++;
        continue;
      }
      if (!addBatchOf(offset)) {
        // A remote source's cache miss: the offset stays ready until its batch is fetched again.
        if (blocked !== null && key !== null) blocked.add(key);
        i++;
        continue;
      }
      this.ready.splice(i, 1);
      this.forgetWaiting(offset);
      take(offset, key);
    }

    // 2. New offsets from the cursor.
    let bytesRead = 0;
    while (collected.offsets.length < max && bytesRead < maxBytes) {
      const end = Math.min(this.partition.visibleEndOffset, windowEnd);
      if (this.cursor >= end) break;
      const read = this.partition.read(this.cursor, maxBytes - bytesRead);
      if (read.batchCount === 0) break;
      bytesRead += read.records.length;
      const records = read.records;
      let position = 0;
      let advanced = false;
      while (position < records.length && collected.offsets.length < max) {
        const length = batchLengthAt(records, position);
        const base = batchBaseOffset(records, position);
        const last = base + batchRecordCountAt(records, position) - 1;
        const batch = records.subarray(position, position + length);
        position += length;
        if (last < this.cursor) continue;
        let used = false;
        const cursor = blocked !== null ? new RecordCursor(batch, 0) : null;
        for (let offset = Math.max(base, this.cursor); offset <= last; offset++) {
          if (offset >= end || collected.offsets.length >= max) break;
          let key: string | null = null;
          if (cursor !== null) {
            while (cursor.offset < offset && cursor.next()) {}
            key =
              cursor.keyLength < 0
                ? null
                : Buffer.from(batch.buffer, batch.byteOffset + cursor.keyPosition, cursor.keyLength).toString(
                    'latin1',
                  );
          }
          this.cursor = offset + 1;
          advanced = true;
          if (this.isSettled(offset)) continue;
          const retry = this.ackState.retry(offset);
          if (retry !== undefined && retry.atMs > nowWallMs) {
            this.addWaiting(offset, key);
            const due = nowMonotonicMs + (retry.atMs - nowWallMs);
            this.scheduled.set(offset, due);
            onSchedule(offset, due);
            continue;
          }
          if (blocked !== null && key !== null && !this.mayTake(key, offset, member, members, blocked)) {
            this.addWaiting(offset, key);
            insertSorted(this.ready, offset);
            continue;
          }
          take(offset, key);
          used = true;
        }
        if (used && !batchBases.has(base)) {
          batchBases.add(base);
          collected.records.push(batch);
        }
      }
      if (!advanced) break;
    }
    return collected;
  }

  /**
   * The source's log start moved past offsets this queue partition still expects (retention): they
   * leave every list, the cursor moves to the log start. Returns the new log start when something
   * moved (the caller records it durably: a `gone` entry), else null.
   */
  skipGone(): number | null {
    const start = this.partition.logStartOffset;
    if (start <= this.goneBelow) return null;
    this.goneBelow = start;
    this.ackState = this.ackOf();
    if (start <= this.ackState.floor) return null;
    for (const [offset] of [...this.inFlight]) if (offset < start) this.beginSettle(offset);
    for (const offset of [...this.scheduled.keys()]) if (offset < start) this.beginSettle(offset);
    while (this.ready.length > 0 && this.ready[0]! < start) this.beginSettle(this.ready[0]!);
    for (const offset of [...this.counts.keys()]) if (offset < start) this.counts.delete(offset);
    if (this.cursor < start) this.cursor = start;
    return start;
  }

  /** The delivery of `offset` ends without an ack (acked elsewhere, nacked, expired, released). */
  endDelivery(offset: number): InFlightDelivery | undefined {
    const delivery = this.inFlight.get(offset);
    if (delivery === undefined) return undefined;
    this.inFlight.delete(offset);
    // Its count outlives the delivery (the AckState gets it once the 'delivered' entry applies).
    this.counts.set(offset, delivery.deliveryCount);
    const batch = delivery.batch;
    if (--batch.live === 0) {
      batch.offsets = null;
      batch.leases = null;
    }
    if (delivery.key !== null) {
      const state = this.keys.get(delivery.key);
      if (state !== undefined) {
        state.inFlight--;
        this.dropKeyIfIdle(delivery.key, state);
      }
    }
    return delivery;
  }

  /** `offset` (below the cursor, not in flight) may be delivered again now. */
  makeReady(offset: number, key: string | null): void {
    this.scheduled.delete(offset);
    this.addWaiting(offset, key);
    insertSorted(this.ready, offset);
  }

  /** `offset` waits until the monotonic time `dueMs`. */
  schedule(offset: number, key: string | null, dueMs: number): void {
    removeSorted(this.ready, offset);
    this.addWaiting(offset, key);
    this.scheduled.set(offset, dueMs);
  }

  /** A scheduled offset's time came: ready when still scheduled for that time. */
  scheduleDue(offset: number, dueMs: number): boolean {
    if (this.scheduled.get(offset) !== dueMs) return false;
    this.scheduled.delete(offset);
    if (this.isSettled(offset)) {
      this.forgetWaiting(offset);
      return false;
    }
    insertSorted(this.ready, offset);
    return true;
  }

  /** The key of a waiting offset (key_shared). */
  waitingKey(offset: number): string | null {
    return this.waitingKeys.get(offset) ?? null;
  }

  /**
   * Takes `offset` out of every list (in flight, ready, scheduled): it is being settled and is never
   * handed out again. `guard`: also refuse it while its settlement is written (dead letters, whose
   * write may fail and undo; an ack's offset is below the cursor and out of every list already).
   */
  beginSettle(offset: number, guard = false): void {
    if (guard) this.settling.add(offset);
    const delivery = this.inFlight.get(offset);
    if (delivery !== undefined) {
      this.inFlight.delete(offset);
      const batch = delivery.batch;
      if (--batch.live === 0) {
        batch.offsets = null;
        batch.leases = null;
      }
      if (delivery.key !== null) {
        const state = this.keys.get(delivery.key);
        if (state !== undefined) {
          state.inFlight--;
          this.dropKeyIfIdle(delivery.key, state);
        }
      }
    }
    if (this.scheduled.size > 0) this.scheduled.delete(offset);
    if (this.ready.length > 0) removeSorted(this.ready, offset);
    this.forgetWaiting(offset);
    if (this.counts.size > 0) this.counts.delete(offset);
  }

  /** The settlement of `offset` is durable and applied (or failed: then `undo`). */
  endSettle(offset: number): void {
    if (this.settling.size > 0) this.settling.delete(offset);
  }

  /** Releases every delivery of `member` (its session closed); returns the offsets released. */
  deliveriesOf(member: number): number[] {
    const offsets: number[] = [];
    for (const [offset, delivery] of this.inFlight) if (delivery.member === member) offsets.push(offset);
    return offsets;
  }

  private keyState(key: string): KeyState {
    let state = this.keys.get(key);
    if (state === undefined) {
      state = { owner: -1, inFlight: 0, waiting: [] };
      this.keys.set(key, state);
    }
    return state;
  }

  private dropKeyIfIdle(key: string, state: KeyState): void {
    if (state.inFlight === 0 && state.waiting.length === 0) this.keys.delete(key);
  }

  private addWaiting(offset: number, key: string | null): void {
    if (this.mode !== 'key_shared') return;
    this.waitingKeys.set(offset, key);
    if (key !== null) insertSorted(this.keyState(key).waiting, offset);
  }

  private forgetWaiting(offset: number): void {
    if (this.mode !== 'key_shared' || !this.waitingKeys.has(offset)) return;
    const key = this.waitingKeys.get(offset) ?? null;
    this.waitingKeys.delete(offset);
    if (key === null) return;
    const state = this.keys.get(key);
    if (state === undefined) return;
    removeSorted(state.waiting, offset);
    this.dropKeyIfIdle(key, state);
  }

  /** key_shared: may `member` take `offset` of `key` now? A refusal blocks the key for this collect. */
  private mayTake(
    key: string,
    offset: number,
    member: number,
    members: readonly number[],
    blocked: Set<string>,
  ): boolean {
    if (blocked.has(key)) return false;
    const state = this.keys.get(key);
    const waiting = state?.waiting ?? emptyKeys;
    let allowed: boolean;
    if (waiting.length > 0 && waiting[0]! < offset) allowed = false;
    else if (state !== undefined && state.inFlight > 0) allowed = state.owner === member;
    else allowed = ownerByHash(key, members) === member;
    if (!allowed) blocked.add(key);
    return allowed;
  }
}

/** The member a key goes to when it has nothing in flight: murmur2 of the key over the sorted members. */
export function ownerByHash(key: string, members: readonly number[]): number {
  assert(members.length > 0, 'a key_shared group has members when it delivers');
  const hash = murmur2(Buffer.from(key, 'latin1')) & 0x7fffffff;
  return members[hash % members.length]!;
}
