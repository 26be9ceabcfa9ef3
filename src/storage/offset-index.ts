/**
 * Sparse offset index of one segment: maps a relative offset (offset - segment base offset) to the
 * byte position of the batch that starts there. One entry every `indexIntervalBytes` of log.
 *
 * File `<baseOffset>.index`: entries of 8 bytes, little-endian, ascending in both fields:
 *   0 uint32 relativeOffset   base offset of the indexed batch minus the segment's base offset
 *   4 uint32 position         byte position of that batch in the .log file
 * The index is derived data: written when a segment is sealed or closed, validated on load and
 * rebuilt from the log when missing or invalid. It is kept in memory while the segment is open.
 */
import { unreachable } from '../assert.js';

const entryBytes = 8;

export class OffsetIndex {
  private relativeOffsets: Uint32Array;
  private positions: Uint32Array;
  private length = 0;

  constructor(capacity = 64) {
    this.relativeOffsets = new Uint32Array(capacity);
    this.positions = new Uint32Array(capacity);
  }

  get entryCount(): number {
    return this.length;
  }

  /** Adds an entry; both fields must be larger than the last entry's. */
  append(relativeOffset: number, position: number): void {
    if (this.length > 0) {
      const lastOffset = this.relativeOffsets[this.length - 1]!;
      const lastPosition = this.positions[this.length - 1]!;
      if (relativeOffset <= lastOffset || position <= lastPosition) {
        unreachable(
          `offset index must grow: (${relativeOffset}, ${position}) after (${lastOffset}, ${lastPosition})`,
        );
      }
    }
    if (this.length === this.relativeOffsets.length) {
      const grownOffsets = new Uint32Array(this.length * 2);
      grownOffsets.set(this.relativeOffsets);
      const grownPositions = new Uint32Array(this.length * 2);
      grownPositions.set(this.positions);
      this.relativeOffsets = grownOffsets;
      this.positions = grownPositions;
    }
    this.relativeOffsets[this.length] = relativeOffset;
    this.positions[this.length] = position;
    this.length++;
  }

  /** Position of the last indexed batch whose relative offset is <= `relativeOffset`, or 0. */
  lookup(relativeOffset: number): number {
    return this.lookupEntry(relativeOffset)?.position ?? 0;
  }

  /** The last entry whose relative offset is <= `relativeOffset`, or null. */
  lookupEntry(relativeOffset: number): { relativeOffset: number; position: number } | null {
    let low = 0;
    let high = this.length - 1;
    let found = -1;
    while (low <= high) {
      const middle = (low + high) >>> 1;
      if (this.relativeOffsets[middle]! <= relativeOffset) {
        found = middle;
        low = middle + 1;
      } else {
        high = middle - 1;
      }
    }
    return found < 0
      ? null
      : { relativeOffset: this.relativeOffsets[found]!, position: this.positions[found]! };
  }

  /** Drops the entries of batches at or after `position` (used when the log is truncated). */
  truncateToPosition(position: number): void {
    while (this.length > 0 && this.positions[this.length - 1]! >= position) this.length--;
  }

  lastEntry(): { relativeOffset: number; position: number } | null {
    if (this.length === 0) return null;
    return {
      relativeOffset: this.relativeOffsets[this.length - 1]!,
      position: this.positions[this.length - 1]!,
    };
  }

  entry(index: number): { relativeOffset: number; position: number } {
    if (index < 0 || index >= this.length) unreachable(`no offset index entry ${index}`);
    return { relativeOffset: this.relativeOffsets[index]!, position: this.positions[index]! };
  }

  toBytes(): Buffer {
    const bytes = Buffer.allocUnsafe(this.length * entryBytes);
    for (let i = 0; i < this.length; i++) {
      bytes.writeUInt32LE(this.relativeOffsets[i]!, i * entryBytes);
      bytes.writeUInt32LE(this.positions[i]!, i * entryBytes + 4);
    }
    return bytes;
  }

  /**
   * Parses an index file. Returns the reason instead of an index when the bytes cannot be right for
   * a segment of `segmentSizeBytes` (the caller then rebuilds the index from the log).
   */
  static fromBytes(bytes: Uint8Array, segmentSizeBytes: number): OffsetIndex | string {
    if (bytes.length % entryBytes !== 0)
      return `index size ${bytes.length} is not a multiple of ${entryBytes}`;
    const count = bytes.length / entryBytes;
    const index = new OffsetIndex(Math.max(64, count));
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let i = 0; i < count; i++) {
      const relativeOffset = view.getUint32(i * entryBytes, true);
      const position = view.getUint32(i * entryBytes + 4, true);
      if (position >= segmentSizeBytes) return `entry ${i} points past the segment end`;
      const last = index.lastEntry();
      if (last && (relativeOffset <= last.relativeOffset || position <= last.position)) {
        return `entry ${i} is not ascending`;
      }
      index.append(relativeOffset, position);
    }
    return index;
  }
}
