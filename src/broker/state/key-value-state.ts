/**
 * A key → value state machine (state-machine.ts) for state logs whose state is a map: committed
 * offsets per (group, topic, partition), producer ids, and the like. Entries:
 *
 *   { op: 'put', key, value }     sets `key` (a string of at most keyValueKeyLengthMax characters)
 *   { op: 'delete', key }         removes it (absent keys included: deletes are idempotent)
 *
 * As records: key = the key in UTF-8, value = the value as its ValueCodec encodes it, or null for a
 * delete (a tombstone). Two value codecs: `msgpackValues(validate)` for anything msgpack carries
 * (numbers, strings, plain objects; `validate` checks what is read back), and `bytesValues` for raw
 * bytes stored as they are (no encoding at all: the fastest to recover).
 */
import { type EntryCodec, type StateMachine, statePackr } from './state-machine.js';

export type KeyValueEntry<Value> = { op: 'put'; key: string; value: Value } | { op: 'delete'; key: string };

/** Longest key accepted, in UTF-16 code units. */
export const keyValueKeyLengthMax = 4096;

/** Values to record values and back; `decode` gets a view valid only during the call. */
export interface ValueCodec<Value> {
  encode(value: Value): Uint8Array;
  decode(bytes: Uint8Array): Value;
}

/** msgpack values; `validate` turns what is read back into a Value or throws. */
export function msgpackValues<Value>(validate: (value: unknown) => Value): ValueCodec<Value> {
  return { encode: (value) => statePackr.pack(value), decode: (bytes) => validate(statePackr.unpack(bytes)) };
}

/** Raw bytes, stored as they are; read back as a copy the machine owns. */
export const bytesValues: ValueCodec<Uint8Array> = {
  encode: (value) => {
    if (!(value instanceof Uint8Array)) throw new Error('a bytes value must be a Uint8Array');
    return value;
  },
  // Buffer.from copies small values into Node's shared pool: no ArrayBuffer allocated per value.
  decode: (bytes) => Buffer.from(bytes),
};

export function keyValueCodec<Value>(values: ValueCodec<Value>): EntryCodec<KeyValueEntry<Value>> {
  return {
    encode(entry) {
      if (typeof entry.key !== 'string' || entry.key.length > keyValueKeyLengthMax) {
        throw new Error(`key-value entry key must be a string of at most ${keyValueKeyLengthMax} characters`);
      }
      return { key: entry.key, value: entry.op === 'put' ? values.encode(entry.value) : null };
    },
    decode(record) {
      const key = record.keyText();
      if (key === null || key.length > keyValueKeyLengthMax) {
        throw new Error(`key-value entry key must be a string of at most ${keyValueKeyLengthMax} characters`);
      }
      const value = record.value();
      if (value === null) return { op: 'delete', key };
      return { op: 'put', key, value: values.decode(value) };
    },
  };
}

export class KeyValueState<Value> implements StateMachine<KeyValueEntry<Value>> {
  private readonly entries = new Map<string, Value>();

  get size(): number {
    return this.entries.size;
  }

  get(key: string): Value | undefined {
    return this.entries.get(key);
  }

  /** The map itself, read-only: iterate without copying. */
  view(): ReadonlyMap<string, Value> {
    return this.entries;
  }

  apply(entry: KeyValueEntry<Value>): void {
    if (entry.op === 'put') this.entries.set(entry.key, entry.value);
    else this.entries.delete(entry.key);
  }

  *snapshot(): Iterable<KeyValueEntry<Value>> {
    for (const [key, value] of this.entries) yield { op: 'put', key, value };
  }

  reset(): void {
    this.entries.clear();
  }
}
