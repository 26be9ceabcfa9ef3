/**
 * What a state log (state-log.ts) keeps: a deterministic state machine, changed only by entries
 * applied in log order, and able to write itself out as entries (a snapshot).
 *
 * Contract:
 *  - `apply(entry, offset)` is deterministic: the same entries in the same order give the same state,
 *    at run time and when recovery replays the log. It throws only for an entry it cannot accept;
 *    callers validate before they commit, so during recovery a throw means the log is corrupt.
 *  - `snapshot()` yields entries that, applied in order to a machine after `reset()`, rebuild the
 *    current state exactly.
 *  - The machine is only ever changed through `apply` and `reset` (by the state log).
 */
import { Packr } from 'msgpackr';

export interface StateMachine<Entry> {
  apply(entry: Entry, offset: number): void;
  snapshot(): Iterable<Entry>;
  reset(): void;
}

/**
 * An entry as one record of the record-batch format: the key names what the entry is about (a topic,
 * a group/partition, ...), the value says what it is now; a null value is a tombstone (the thing is
 * gone). Keyed records keep the log open to compaction by key, as Kafka's internal topics use it.
 */
export interface EncodedEntry {
  /** A string is written as UTF-8 by the batch builder without an intermediate copy. */
  key: string | Uint8Array | null;
  value: Uint8Array | null;
}

/** The record an entry is decoded from (RecordCursor provides it): views valid during `decode`. */
export interface EntryRecord {
  key(): Uint8Array | null;
  /** The key decoded from UTF-8, or null. */
  keyText(): string | null;
  value(): Uint8Array | null;
}

/** Entries to records and back. `decode` validates (the bytes come from disk) and throws when invalid. */
export interface EntryCodec<Entry> {
  encode(entry: Entry): EncodedEntry;
  decode(record: EntryRecord): Entry;
}

/** The msgpack settings of the broker's state: plain maps, no records or extensions. */
export const statePackr = new Packr({
  useRecords: false,
  mapsAsObjects: true,
  moreTypes: false,
  int64AsType: 'number',
});
