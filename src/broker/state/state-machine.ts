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

/** Entries to bytes and back. `decode` validates (the bytes come from disk) and throws when invalid. */
export interface EntryCodec<Entry> {
  encode(entry: Entry): Uint8Array;
  decode(bytes: Uint8Array): Entry;
}

const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false, int64AsType: 'number' });

/** msgpack for plain objects; `validate` turns the decoded value into an Entry or throws. */
export function msgpackCodec<Entry>(validate: (value: unknown) => Entry): EntryCodec<Entry> {
  return {
    encode: (entry) => packr.pack(entry),
    decode: (bytes) => validate(packr.unpack(bytes)),
  };
}
