/**
 * Sparse time index of one segment, for `offsetForTime`. Entries are taken at the same batches as
 * the offset index. An entry (maxTimestampBefore, position) says: every batch before `position` in
 * this segment has a max timestamp <= maxTimestampBefore. To find the first batch whose max
 * timestamp is >= T, start scanning at the last entry whose maxTimestampBefore < T.
 *
 * File `<baseOffset>.timeindex`: entries of 12 bytes, little-endian:
 *   0 int64  maxTimestampBefore   ms since the epoch; -1 when no batch precedes (first entry)
 *   8 uint32 position             byte position of the indexed batch in the .log file
 * Derived data, like the offset index: validated on load, rebuilt when missing or invalid.
 */
import { unreachable } from '../assert.js';
import { readInt64LE, writeInt64LE } from '../format/int64.js';

const entryBytes = 12;

export class TimeIndex {
  private timestamps: Float64Array;
  private positions: Uint32Array;
  private length = 0;

  constructor(capacity = 64) {
    this.timestamps = new Float64Array(capacity);
    this.positions = new Uint32Array(capacity);
  }

  get entryCount(): number {
    return this.length;
  }

  append(maxTimestampBefore: number, position: number): void {
    if (this.length > 0) {
      if (
        position <= this.positions[this.length - 1]! ||
        maxTimestampBefore < this.timestamps[this.length - 1]!
      ) {
        unreachable(`time index must grow: (${maxTimestampBefore}, ${position})`);
      }
    }
    if (this.length === this.positions.length) {
      const grownTimestamps = new Float64Array(this.length * 2);
      grownTimestamps.set(this.timestamps);
      const grownPositions = new Uint32Array(this.length * 2);
      grownPositions.set(this.positions);
      this.timestamps = grownTimestamps;
      this.positions = grownPositions;
    }
    this.timestamps[this.length] = maxTimestampBefore;
    this.positions[this.length] = position;
    this.length++;
  }

  /** Position from which to scan for the first batch with max timestamp >= `timestamp`. */
  lookup(timestamp: number): number {
    let low = 0;
    let high = this.length - 1;
    let found = -1;
    while (low <= high) {
      const middle = (low + high) >>> 1;
      if (this.timestamps[middle]! < timestamp) {
        found = middle;
        low = middle + 1;
      } else {
        high = middle - 1;
      }
    }
    return found < 0 ? 0 : this.positions[found]!;
  }

  positionAt(index: number): number {
    if (index < 0 || index >= this.length) unreachable(`no time index entry ${index}`);
    return this.positions[index]!;
  }

  /** The max timestamp recorded by the last entry, or -1 when there is none. */
  lastMaxTimestampBefore(): number {
    return this.length === 0 ? -1 : this.timestamps[this.length - 1]!;
  }

  truncateToPosition(position: number): void {
    while (this.length > 0 && this.positions[this.length - 1]! >= position) this.length--;
  }

  toBytes(): Buffer {
    const bytes = Buffer.allocUnsafe(this.length * entryBytes);
    for (let i = 0; i < this.length; i++) {
      writeInt64LE(bytes, this.timestamps[i]!, i * entryBytes);
      bytes.writeUInt32LE(this.positions[i]!, i * entryBytes + 8);
    }
    return bytes;
  }

  static fromBytes(bytes: Uint8Array, segmentSizeBytes: number): TimeIndex | string {
    if (bytes.length % entryBytes !== 0)
      return `time index size ${bytes.length} is not a multiple of ${entryBytes}`;
    const count = bytes.length / entryBytes;
    const index = new TimeIndex(Math.max(64, count));
    let lastPosition = -1;
    let lastTimestamp = Number.NEGATIVE_INFINITY;
    for (let i = 0; i < count; i++) {
      const timestamp = readInt64LE(bytes, i * entryBytes);
      const position =
        (bytes[i * entryBytes + 8]! |
          (bytes[i * entryBytes + 9]! << 8) |
          (bytes[i * entryBytes + 10]! << 16) |
          (bytes[i * entryBytes + 11]! << 24)) >>>
        0;
      if (position >= segmentSizeBytes) return `entry ${i} points past the segment end`;
      if (position <= lastPosition || timestamp < lastTimestamp) return `entry ${i} is not ascending`;
      index.append(timestamp, position);
      lastPosition = position;
      lastTimestamp = timestamp;
    }
    return index;
  }
}
