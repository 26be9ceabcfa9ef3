/**
 * The state machine of `__transactions` (docs/STATE.md, "Transactions"): every transaction the
 * broker has not finished, and the outcome of the newest `transactionOutcomesMax` finished ones (to
 * answer a decision that arrives twice). Entries, as records (key → msgpack value):
 *
 *   key `t<id>`   value TransactionRecord   the whole transaction as it is now (begin, a check made,
 *                                           the commit decision, the end), as a positional array
 *                                           (`positional`; the older map form is read too)
 *   key `n`       value { nextId }          in snapshots, and when TXN_IDS reserves ids: ids are
 *                                           never given twice
 *   key `c`       value [id, ...]           committing transactions whose halves are all delivered:
 *                                           each becomes committed (one entry for the commits that
 *                                           finished in one turn, instead of a record each)
 *   key `o`       value binary block        in snapshots: up to outcomeBlockMax outcomes, oldest
 *                                           first (`encodeOutcomeBlock`; snapshots of older brokers
 *                                           wrote a finished `t<id>` record per outcome, still read)
 *
 * A record's `state` moves open → committing → committed, or open → rolled-back; committed and
 * rolled-back are final: the record leaves the live map and its outcome (id, state, decider, decision
 * time, check-backs, messages) joins the outcomes, oldest dropped first past `outcomesMax`
 * (deterministic: replay drops the same ones). Snapshots write the outcomes as binary blocks (no
 * object per outcome on either side).
 */
import { transactionOutcomesMax } from '../../limits.js';
import { type EntryCodec, type StateMachine, statePackr } from '../state/state-machine.js';

export type TransactionStatus = 'open' | 'committing' | 'committed' | 'rolled-back';
export type DecidedBy = 'producer' | 'check-back' | 'timeout';

/** Where a committing transaction's batches may already be: scan the target from `fromOffset`. */
export interface CommitTarget {
  topic: string;
  partition: number;
  /** The target's log end when the commit decision was taken: every delivered batch is at or after it. */
  fromOffset: number;
}

export interface TransactionRecord {
  id: number;
  group: string;
  /** Wall ms (the broker's clock). */
  beganAtMs: number;
  checkAfterMs: number;
  maxChecks: number;
  /** Check-backs made so far. */
  checks: number;
  /** Wall ms of the next check-back (or of the rollback once `checks` reached `maxChecks`). */
  nextCheckAtMs: number;
  /** `__txn_half` log end at begin: every half of this transaction is at or after it. */
  halfFrom: number;
  state: TransactionStatus;
  decidedBy: DecidedBy | null;
  decidedAtMs: number | null;
  /** Messages (records) committed or discarded; 0 while open. */
  messages: number;
  /** While committing: where to look for batches already delivered. */
  targets: CommitTarget[];
}

export type TransactionEntry =
  | { kind: 'transaction'; record: TransactionRecord }
  | { kind: 'next'; nextId: number }
  /** Committing transactions whose every half is delivered: each becomes `committed` as it stands. */
  | { kind: 'committed'; ids: number[] }
  /** Finished outcomes, oldest first, as an outcome block (encodeOutcomeBlock; validated). */
  | { kind: 'outcomes'; block: Uint8Array };

const statuses: readonly TransactionStatus[] = ['open', 'committing', 'committed', 'rolled-back'];
const deciders: readonly DecidedBy[] = ['producer', 'check-back', 'timeout'];

function integer(value: unknown, name: string, min = 0): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) {
    throw new Error(`transaction field ${name} is not an integer >= ${min}: ${String(value)}`);
  }
  return value;
}

function validateRecord(value: unknown): TransactionRecord {
  if (typeof value !== 'object' || value === null) throw new Error('a transaction record is not a map');
  const fields = value as Record<string, unknown>;
  const state = fields['state'] as TransactionStatus;
  if (!statuses.includes(state)) throw new Error(`unknown transaction state ${String(state)}`);
  const decidedBy = fields['decidedBy'] ?? null;
  if (decidedBy !== null && !deciders.includes(decidedBy as DecidedBy)) {
    throw new Error(`unknown transaction decider ${String(decidedBy)}`);
  }
  if (typeof fields['group'] !== 'string') throw new Error('transaction group is not a string');
  const targets = fields['targets'] ?? [];
  if (!Array.isArray(targets)) throw new Error('transaction targets is not a list');
  return {
    id: integer(fields['id'], 'id', 1),
    group: fields['group'],
    beganAtMs: integer(fields['beganAtMs'], 'beganAtMs'),
    checkAfterMs: integer(fields['checkAfterMs'], 'checkAfterMs', 1),
    maxChecks: integer(fields['maxChecks'], 'maxChecks'),
    checks: integer(fields['checks'], 'checks'),
    nextCheckAtMs: integer(fields['nextCheckAtMs'], 'nextCheckAtMs'),
    halfFrom: integer(fields['halfFrom'], 'halfFrom'),
    state,
    decidedBy: decidedBy as DecidedBy | null,
    decidedAtMs: fields['decidedAtMs'] == null ? null : integer(fields['decidedAtMs'], 'decidedAtMs'),
    messages: integer(fields['messages'] ?? 0, 'messages'),
    targets: targets.map((target: unknown) => {
      const t = target as Record<string, unknown>;
      if (typeof t?.['topic'] !== 'string') throw new Error('commit target topic is not a string');
      return {
        topic: t['topic'],
        partition: integer(t['partition'], 'partition'),
        fromOffset: integer(t['fromOffset'], 'fromOffset'),
      };
    }),
  };
}

/** Version tag of the positional form of a record (first element of the array). */
const recordFormPositional = 1;

/**
 * A record as a msgpack array (no field names: about a third of the map's bytes and encoding time):
 * [1, id, group, beganAtMs, checkAfterMs, maxChecks, checks, nextCheckAtMs, halfFrom, state,
 *  decidedBy, decidedAtMs, messages, [topic, partition, fromOffset, ...]].
 */
function positional(record: TransactionRecord): unknown[] {
  const targets: Array<string | number> = [];
  for (const target of record.targets) targets.push(target.topic, target.partition, target.fromOffset);
  return [
    recordFormPositional,
    record.id,
    record.group,
    record.beganAtMs,
    record.checkAfterMs,
    record.maxChecks,
    record.checks,
    record.nextCheckAtMs,
    record.halfFrom,
    record.state,
    record.decidedBy,
    record.decidedAtMs,
    record.messages,
    targets,
  ];
}

/** The map form of a positional record, for validateRecord. */
function fromPositional(values: unknown[]): Record<string, unknown> {
  if (values[0] !== recordFormPositional || values.length !== 14) {
    throw new Error(`unknown transaction record form (${String(values[0])}, ${values.length} fields)`);
  }
  const flat = values[13];
  if (!Array.isArray(flat) || flat.length % 3 !== 0) throw new Error('commit targets are not triples');
  const targets: Array<Record<string, unknown>> = [];
  for (let i = 0; i < flat.length; i += 3) {
    targets.push({ topic: flat[i], partition: flat[i + 1], fromOffset: flat[i + 2] });
  }
  return {
    id: values[1],
    group: values[2],
    beganAtMs: values[3],
    checkAfterMs: values[4],
    maxChecks: values[5],
    checks: values[6],
    nextCheckAtMs: values[7],
    halfFrom: values[8],
    state: values[9],
    decidedBy: values[10],
    decidedAtMs: values[11],
    messages: values[12],
    targets,
  };
}

export const transactionCodec: EntryCodec<TransactionEntry> = {
  encode(entry) {
    if (entry.kind === 'next') return { key: 'n', value: statePackr.pack({ nextId: entry.nextId }) };
    if (entry.kind === 'committed') return { key: 'c', value: statePackr.pack(entry.ids) };
    if (entry.kind === 'outcomes') return { key: 'o', value: entry.block };
    return { key: `t${entry.record.id}`, value: statePackr.pack(positional(entry.record)) };
  },
  decode(record) {
    const key = record.keyText();
    const value = record.value();
    if (key === null || value === null) throw new Error('a __transactions entry has a key and a value');
    if (key === 'o') {
      checkOutcomeBlock(value);
      return { kind: 'outcomes', block: new Uint8Array(value) }; // a copy: `value` is a view
    }
    const decoded: unknown = statePackr.unpack(value);
    if (key === 'n') {
      return { kind: 'next', nextId: integer((decoded as Record<string, unknown>)?.['nextId'], 'nextId', 1) };
    }
    if (key === 'c') {
      if (!Array.isArray(decoded)) throw new Error('a committed entry is not a list of ids');
      return { kind: 'committed', ids: decoded.map((id: unknown) => integer(id, 'id', 1)) };
    }
    // Written as an array since the transaction-rate work; maps (the first form) are still read.
    const record_ = validateRecord(Array.isArray(decoded) ? fromPositional(decoded) : decoded);
    if (key !== `t${record_.id}`)
      throw new Error(`__transactions key ${key} does not match id ${record_.id}`);
    return { kind: 'transaction', record: record_ };
  },
};

export function isFinished(state: TransactionStatus): boolean {
  return state === 'committed' || state === 'rolled-back';
}

/** What is kept of a finished transaction: enough to answer a repeated decision. */
export interface TransactionOutcome {
  id: number;
  state: 'committed' | 'rolled-back';
  decidedBy: DecidedBy | null;
  decidedAtMs: number | null;
  checks: number;
  messages: number;
}

/**
 * An outcome block (entry `o`, snapshots): byte 0 the version (1), bytes 1-4 the count (uint32 LE),
 * then per outcome 30 bytes, little endian: id float64, decidedAtMs float64 (NaN: none), messages
 * float64, checks uint32, state uint8 (1 committed, 0 rolled back), decider uint8 (an index of
 * `deciders`, 255 none).
 */
const outcomeBlockVersion = 1;
const outcomeBlockHeaderBytes = 5;
const outcomeBytes = 30;
/** Outcomes per block (about 120 KiB: well inside a state log batch). */
export const outcomeBlockMax = 4096;

function isCount(value: number, min: number): boolean {
  return Number.isSafeInteger(value) && value >= min;
}

/** Throws unless `block` is a well-formed outcome block (it comes from disk). */
function checkOutcomeBlock(block: Uint8Array): void {
  if (block.length < outcomeBlockHeaderBytes || block[0] !== outcomeBlockVersion) {
    throw new Error(`unknown outcome block form (${block.length} bytes, version ${String(block[0])})`);
  }
  const view = new DataView(block.buffer, block.byteOffset, block.length);
  const count = view.getUint32(1, true);
  if (count > outcomeBlockMax || block.length !== outcomeBlockHeaderBytes + count * outcomeBytes) {
    throw new Error(`an outcome block of ${block.length} bytes does not hold ${count} outcomes`);
  }
  for (let i = 0, at = outcomeBlockHeaderBytes; i < count; i++, at += outcomeBytes) {
    const decidedAt = view.getFloat64(at + 8, true);
    const decider = view.getUint8(at + 29);
    if (
      !isCount(view.getFloat64(at, true), 1) ||
      !(Number.isNaN(decidedAt) || isCount(decidedAt, 0)) ||
      !isCount(view.getFloat64(at + 16, true), 0) ||
      view.getUint8(at + 28) > 1 ||
      (decider !== noDecider && decider >= deciders.length)
    ) {
      throw new Error(`outcome ${i} of an outcome block is not valid`);
    }
  }
}

/** First ring capacity; the ring doubles up to `outcomesMax`. */
const outcomeRingInitial = 1024;
const noDecider = 255;

/**
 * The newest finished transactions' outcomes as a ring of parallel typed arrays, oldest first, plus
 * id → slot. No object per outcome: the whole records used to be kept here, lived long enough to
 * reach the old generation and then died there (a quarter of the transaction service's profile was
 * GC). A repeated finished id updates its slot in place (it keeps its age).
 */
class OutcomeRing {
  private readonly max: number;
  private ids: Float64Array;
  private states: Uint8Array;
  private deciders: Uint8Array;
  private decidedAt: Float64Array;
  private checks: Uint32Array;
  private messages: Float64Array;
  /** Slot of the oldest outcome. */
  private head = 0;
  private readonly slots = new Map<number, number>();

  constructor(max: number) {
    this.max = max;
    const capacity = Math.max(1, Math.min(max, outcomeRingInitial));
    this.ids = new Float64Array(capacity);
    this.states = new Uint8Array(capacity);
    this.deciders = new Uint8Array(capacity);
    this.decidedAt = new Float64Array(capacity);
    this.checks = new Uint32Array(capacity);
    this.messages = new Float64Array(capacity);
  }

  get size(): number {
    return this.slots.size;
  }

  has(id: number): boolean {
    return this.slots.has(id);
  }

  get(id: number): TransactionOutcome | undefined {
    const slot = this.slots.get(id);
    return slot === undefined ? undefined : this.at(slot);
  }

  /** Records a finished transaction; drops the oldest past `max`. */
  add(record: TransactionRecord): void {
    this.addOutcome(
      record.id,
      record.state === 'committed' ? 1 : 0,
      record.decidedBy === null ? noDecider : deciders.indexOf(record.decidedBy),
      record.decidedAtMs ?? Number.NaN,
      record.checks,
      record.messages,
    );
  }

  /** `add` by fields: `state` 1 committed, 0 rolled back; `decider` an index of `deciders` or noDecider; `decidedAt` NaN for none. */
  addOutcome(
    id: number,
    state: number,
    decider: number,
    decidedAt: number,
    checks: number,
    messages: number,
  ): void {
    let slot = this.slots.get(id);
    if (slot === undefined) {
      const capacity = this.ids.length;
      if (this.slots.size === capacity) {
        if (capacity < this.max) this.grow(Math.min(this.max, capacity * 2));
        else {
          this.slots.delete(this.ids[this.head]!);
          this.head = (this.head + 1) % capacity;
        }
      }
      slot = (this.head + this.slots.size) % this.ids.length;
      this.slots.set(id, slot);
    }
    this.ids[slot] = id;
    this.states[slot] = state;
    this.deciders[slot] = decider;
    this.decidedAt[slot] = decidedAt;
    this.checks[slot] = checks;
    this.messages[slot] = messages;
  }

  /** The outcomes, oldest first, as blocks of at most outcomeBlockMax (encodeOutcomeBlock's layout). */
  *blocks(): Iterable<Uint8Array> {
    const capacity = this.ids.length;
    const size = this.slots.size;
    for (let first = 0; first < size; first += outcomeBlockMax) {
      const count = Math.min(outcomeBlockMax, size - first);
      const block = new Uint8Array(outcomeBlockHeaderBytes + count * outcomeBytes);
      const view = new DataView(block.buffer);
      view.setUint8(0, outcomeBlockVersion);
      view.setUint32(1, count, true);
      let at = outcomeBlockHeaderBytes;
      for (let i = 0; i < count; i++) {
        const slot = (this.head + first + i) % capacity;
        view.setFloat64(at, this.ids[slot]!, true);
        view.setFloat64(at + 8, this.decidedAt[slot]!, true);
        view.setFloat64(at + 16, this.messages[slot]!, true);
        view.setUint32(at + 24, this.checks[slot]!, true);
        view.setUint8(at + 28, this.states[slot]!);
        view.setUint8(at + 29, this.deciders[slot]!);
        at += outcomeBytes;
      }
      yield block;
    }
  }

  /** Oldest first. */
  *values(): Iterable<TransactionOutcome> {
    const capacity = this.ids.length;
    for (let i = 0; i < this.slots.size; i++) yield this.at((this.head + i) % capacity);
  }

  clear(): void {
    this.slots.clear();
    this.head = 0;
  }

  private at(slot: number): TransactionOutcome {
    const decider = this.deciders[slot]!;
    const decidedAt = this.decidedAt[slot]!;
    return {
      id: this.ids[slot]!,
      state: this.states[slot] === 1 ? 'committed' : 'rolled-back',
      decidedBy: decider === noDecider ? null : deciders[decider]!,
      decidedAtMs: Number.isNaN(decidedAt) ? null : decidedAt,
      checks: this.checks[slot]!,
      messages: this.messages[slot]!,
    };
  }

  private grow(capacity: number): void {
    const oldIds = this.ids;
    const oldStates = this.states;
    const oldDeciders = this.deciders;
    const oldDecidedAt = this.decidedAt;
    const oldChecks = this.checks;
    const oldMessages = this.messages;
    const oldCapacity = oldIds.length;
    this.ids = new Float64Array(capacity);
    this.states = new Uint8Array(capacity);
    this.deciders = new Uint8Array(capacity);
    this.decidedAt = new Float64Array(capacity);
    this.checks = new Uint32Array(capacity);
    this.messages = new Float64Array(capacity);
    for (let i = 0; i < this.slots.size; i++) {
      const from = (this.head + i) % oldCapacity;
      this.ids[i] = oldIds[from]!;
      this.states[i] = oldStates[from]!;
      this.deciders[i] = oldDeciders[from]!;
      this.decidedAt[i] = oldDecidedAt[from]!;
      this.checks[i] = oldChecks[from]!;
      this.messages[i] = oldMessages[from]!;
      this.slots.set(this.ids[i]!, i);
    }
    this.head = 0;
  }
}

export class TransactionStateMachine implements StateMachine<TransactionEntry> {
  /** Open and committing transactions by id. */
  readonly live = new Map<number, TransactionRecord>();
  /** Finished transactions' outcomes by id, oldest first. */
  readonly outcomes: OutcomeRing;
  nextId = 1;

  constructor(outcomesMax = transactionOutcomesMax) {
    this.outcomes = new OutcomeRing(outcomesMax);
  }

  apply(entry: TransactionEntry): void {
    if (entry.kind === 'next') {
      this.nextId = Math.max(this.nextId, entry.nextId);
      return;
    }
    if (entry.kind === 'committed') {
      // Only a committing transaction finishes so; any other id (not live, or open) is left as it is.
      for (const id of entry.ids) {
        const record = this.live.get(id);
        if (record === undefined || record.state !== 'committing') continue;
        this.live.delete(id);
        this.outcomes.addOutcome(
          id,
          1,
          record.decidedBy === null ? noDecider : deciders.indexOf(record.decidedBy),
          record.decidedAtMs ?? Number.NaN,
          record.checks,
          record.messages,
        );
      }
      return;
    }
    if (entry.kind === 'outcomes') {
      this.applyOutcomes(entry.block);
      return;
    }
    const record = entry.record;
    this.nextId = Math.max(this.nextId, record.id + 1);
    if (isFinished(record.state)) {
      this.live.delete(record.id);
      this.outcomes.add(record);
    } else {
      if (this.outcomes.has(record.id)) throw new Error(`transaction ${record.id} is already finished`);
      this.live.set(record.id, record);
    }
  }

  *snapshot(): Iterable<TransactionEntry> {
    yield { kind: 'next', nextId: this.nextId };
    for (const block of this.outcomes.blocks()) yield { kind: 'outcomes', block };
    for (const record of this.live.values()) yield { kind: 'transaction', record };
  }

  /** Each outcome of a (validated) block as a finished record of it would be applied. */
  private applyOutcomes(block: Uint8Array): void {
    const view = new DataView(block.buffer, block.byteOffset, block.length);
    const count = view.getUint32(1, true);
    for (let i = 0, at = outcomeBlockHeaderBytes; i < count; i++, at += outcomeBytes) {
      const id = view.getFloat64(at, true);
      this.nextId = Math.max(this.nextId, id + 1);
      this.live.delete(id);
      this.outcomes.addOutcome(
        id,
        view.getUint8(at + 28),
        view.getUint8(at + 29),
        view.getFloat64(at + 8, true),
        view.getUint32(at + 24, true),
        view.getFloat64(at + 16, true),
      );
    }
  }

  reset(): void {
    this.live.clear();
    this.outcomes.clear();
    this.nextId = 1;
  }
}
