/**
 * A key → value state machine (state-machine.ts) for state logs whose state is a map: committed
 * offsets per (group, topic, partition), producer ids, and the like. Entries:
 *
 *   { op: 'put', key, value }     sets `key` (a string of at most keyValueKeyLengthMax characters)
 *   { op: 'delete', key }         removes it (absent keys included: deletes are idempotent)
 *
 * As records: key = the key in UTF-8, value = the value in msgpack, or null for a delete (a tombstone).
 * Values are anything msgpack carries (numbers, strings, byte arrays, plain objects); `validateValue`
 * checks them when read back from the log.
 */
import { type EntryCodec, keyBytes, type StateMachine, statePackr } from './state-machine.js';

export type KeyValueEntry<Value> = { op: 'put'; key: string; value: Value } | { op: 'delete'; key: string };

/** Longest key accepted, in UTF-16 code units. */
export const keyValueKeyLengthMax = 4096;

export function keyValueCodec<Value>(
  validateValue: (value: unknown) => Value,
): EntryCodec<KeyValueEntry<Value>> {
  return {
    encode(entry) {
      if (typeof entry.key !== 'string' || entry.key.length > keyValueKeyLengthMax) {
        throw new Error(`key-value entry key must be a string of at most ${keyValueKeyLengthMax} characters`);
      }
      return { key: keyBytes(entry.key), value: entry.op === 'put' ? statePackr.pack(entry.value) : null };
    },
    decode(record) {
      const key = record.keyText();
      if (key === null || key.length > keyValueKeyLengthMax) {
        throw new Error(`key-value entry key must be a string of at most ${keyValueKeyLengthMax} characters`);
      }
      const value = record.value();
      if (value === null) return { op: 'delete', key };
      return { op: 'put', key, value: validateValue(statePackr.unpack(value)) };
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
