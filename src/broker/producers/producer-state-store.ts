/**
 * The internal state log `__producer_state` (docs/STATE.md): partition 0 of an internal topic at
 * `dataDir/topics/__producer_state/0/`, durability `always`, holding a key -> value map
 * (state/key-value-state.ts, msgpack values) of idempotent producers:
 *
 *   key `n`                         value <next producer id>               written with every new id
 *   key `p<id>`                     value { e: epoch, n?: name }           a producer id and its epoch
 *   key `s["<topic>",<partition>]`  value { c, u, p }                      a sequence snapshot of a partition
 *
 * A sequence snapshot says: every idempotent batch of the partition below offset `u` (of the topic
 * created at `c`) left the producers in state `p`: `[producerId, epoch, lastSequence (-1: unknown),
 * [baseSequence, lastSequence, baseOffset, lastOffset, ...] of its last batches, oldest first]`.
 * Batches at and after `u` are read back from the partition's own batch headers at open.
 */
import { producerBatchesRememberedMax } from '../../limits.js';
import { type KeyValueEntry, KeyValueState, keyValueCodec, msgpackValues } from '../state/key-value-state.js';
import type { StateLog } from '../state/state-log.js';
import {
  openStateLog,
  type StateLogPartition,
  type StateLogStoreOptions,
} from '../state/state-log-partition.js';

export const producerStateTopicName = '__producer_state';

/** A registered producer id. */
export interface ProducerRecord {
  e: number;
  n?: string;
}

/** One producer's state in a sequence snapshot: [id, epoch, lastSequence, flat batches]. */
export type SnapshotProducer = [number, number, number, number[]];

export interface SequenceSnapshot {
  /** Creation time of the topic (a topic created again under the name starts afresh). */
  c: number;
  /** Every batch below this offset is reflected. */
  u: number;
  p: SnapshotProducer[];
}

export type ProducerStateValue = number | ProducerRecord | SequenceSnapshot;
export type ProducerStateEntry = KeyValueEntry<ProducerStateValue>;

export const nextIdKey = 'n';
export function producerKey(producerId: number): string {
  return `p${producerId}`;
}
export function sequenceKey(topic: string, partition: number): string {
  return `s${JSON.stringify([topic, partition])}`;
}
export function parseSequenceKey(key: string): { topic: string; partition: number } | null {
  if (key[0] !== 's') return null;
  try {
    const parts: unknown = JSON.parse(key.slice(1));
    if (
      Array.isArray(parts) &&
      parts.length === 2 &&
      typeof parts[0] === 'string' &&
      Number.isSafeInteger(parts[1])
    ) {
      return { topic: parts[0], partition: parts[1] as number };
    }
  } catch {
    return null;
  }
  return null;
}

const isInt = (value: unknown, min = 0): value is number =>
  typeof value === 'number' && Number.isSafeInteger(value) && value >= min;

function validateSnapshotProducer(value: unknown): SnapshotProducer {
  if (!Array.isArray(value) || value.length !== 4)
    throw new Error('a snapshot producer is [id, epoch, last, batches]');
  const [id, epoch, last, batches] = value as unknown[];
  if (!isInt(id) || !isInt(epoch) || !isInt(last, -1)) throw new Error('bad snapshot producer fields');
  if (
    !Array.isArray(batches) ||
    batches.length % 4 !== 0 ||
    batches.length > 4 * producerBatchesRememberedMax
  ) {
    throw new Error('bad snapshot producer batches');
  }
  for (const field of batches) if (!isInt(field)) throw new Error('bad snapshot batch field');
  return [id, epoch, last, batches as number[]];
}

function validateValue(value: unknown): ProducerStateValue {
  if (isInt(value)) return value;
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
    const fields = value as Record<string, unknown>;
    if ('e' in fields) {
      if (!isInt(fields['e'])) throw new Error(`producer epoch ${String(fields['e'])}`);
      const name = fields['n'];
      if (name !== undefined && typeof name !== 'string') throw new Error('producer name is not a string');
      return name === undefined ? { e: fields['e'] } : { e: fields['e'], n: name };
    }
    if ('u' in fields) {
      const { c, u, p } = fields;
      if (!isInt(c) || !isInt(u) || !Array.isArray(p)) throw new Error('bad sequence snapshot');
      return { c, u, p: p.map(validateSnapshotProducer) };
    }
  }
  throw new Error('a __producer_state value is a next id, a producer record or a sequence snapshot');
}

export type ProducerStateStoreOptions = StateLogStoreOptions;

export class ProducerStateStore {
  readonly partition: StateLogPartition;
  readonly state: StateLog<ProducerStateEntry>;
  readonly machine: KeyValueState<ProducerStateValue>;

  private constructor(
    partition: StateLogPartition,
    state: StateLog<ProducerStateEntry>,
    machine: KeyValueState<ProducerStateValue>,
  ) {
    this.partition = partition;
    this.state = state;
    this.machine = machine;
  }

  static async open(options: ProducerStateStoreOptions): Promise<ProducerStateStore> {
    const machine = new KeyValueState<ProducerStateValue>();
    const codec = keyValueCodec(msgpackValues(validateValue));
    const { partition, state } = await openStateLog(options, producerStateTopicName, machine, codec);
    return new ProducerStateStore(partition, state, machine);
  }

  /** Every entry applied (recovered at open). */
  entries(): ReadonlyMap<string, ProducerStateValue> {
    return this.machine.view();
  }

  /** Writes (group-committed with the others of this turn); resolves once durable and applied. */
  async put(key: string, value: ProducerStateValue): Promise<void> {
    await this.state.commit({ op: 'put', key, value });
  }

  async delete(key: string): Promise<void> {
    await this.state.commit({ op: 'delete', key });
  }

  async close(): Promise<void> {
    await this.state.close();
    await this.partition.log.close();
  }
}
