/**
 * A key → value state machine (state-machine.ts) for state logs whose state is a map: committed
 * offsets per (group, topic, partition), producer ids, and the like. Entries:
 *
 *   { op: 'put', key, value }     sets `key` (a string of at most keyLengthMax characters)
 *   { op: 'delete', key }         removes it (absent keys included: deletes are idempotent)
 *
 * Values are anything msgpack carries (numbers, strings, byte arrays, plain objects); `validateValue`
 * checks them when read back from the log.
 */
import { type EntryCodec, msgpackCodec, type StateMachine } from './state-machine.js';

export type KeyValueEntry<Value> = { op: 'put'; key: string; value: Value } | { op: 'delete'; key: string };

/** Longest key accepted, in UTF-16 code units. */
export const keyValueKeyLengthMax = 4096;

export function keyValueCodec<Value>(
  validateValue: (value: unknown) => Value,
): EntryCodec<KeyValueEntry<Value>> {
  return msgpackCodec((decoded) => {
    if (typeof decoded !== 'object' || decoded === null) throw new Error('key-value entry is not a map');
    const { op, key, value } = decoded as { op?: unknown; key?: unknown; value?: unknown };
    if (typeof key !== 'string' || key.length > keyValueKeyLengthMax) {
      throw new Error(`key-value entry key must be a string of at most ${keyValueKeyLengthMax} characters`);
    }
    if (op === 'put') return { op, key, value: validateValue(value) };
    if (op === 'delete') return { op, key };
    throw new Error(`unknown key-value entry op ${JSON.stringify(op)}`);
  });
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
