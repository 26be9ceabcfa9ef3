/**
 * Damage found in a partition log when it is opened (log-loader.ts): bytes that do not hold valid
 * batches where acknowledged data must be, or data that is missing (a segment file deleted, a file
 * cut short). Damage is never cut or deleted by recovery: the open fails with a LogDamagedError
 * describing it, the broker stops that partition, and an explicit repair (log-repair.ts) sets the
 * damaged range aside into `quarantine/` (quarantine.ts).
 *
 * Offsets: `fromOffset` is the first offset that cannot be read; `toOffset` the offset where valid
 * data resumes (the next valid batch, the next segment, or the durable end the checkpoint
 * recorded), so [fromOffset, toOffset) is exactly what a repair sets aside. `toOffset` equals
 * `fromOffset` when the damage holds no acknowledged offset the log knows of.
 */
import { CorruptLogError } from '../errors.js';

export type LogDamageKind =
  /** Bytes where a batch must be that are not a valid batch (bad header, CRC32C, offset). */
  | 'corrupt-data'
  /** Offsets the log knew of with no file holding them (a segment deleted, a file cut short). */
  | 'missing-data'
  /** Two segments claim the same offsets: not repairable automatically. */
  | 'overlap';

export interface LogDamage {
  kind: LogDamageKind;
  /** The segment file the damage is in or before (the partition directory when there is none). */
  file: string;
  /** Byte position in `file` where the damage starts (0 for missing data before `file`). */
  position: number;
  reason: string;
  fromOffset: number;
  toOffset: number;
  /**
   * For corrupt data: where valid batches resume in the same file (byte position, offset), or null
   * when nothing valid follows in that file.
   */
  resume: { position: number; offset: number } | null;
  /**
   * True when no segment follows the damage: a repair then starts an empty segment at `toOffset`,
   * so that offsets the log gave out are never given out again.
   */
  atLogEnd: boolean;
}

/** Which offsets the damage makes unreadable, for people. */
export function describeDamagedOffsets(damage: LogDamage): string {
  return damage.toOffset > damage.fromOffset
    ? `offsets ${damage.fromOffset}..${damage.toOffset - 1} (${damage.toOffset - damage.fromOffset} messages) unreadable`
    : `no acknowledged offset affected (the log ends at ${damage.fromOffset})`;
}

/** One line for people: what, where, which offsets. */
export function describeDamage(damage: LogDamage): string {
  return `${damage.kind} in ${damage.file} at position ${damage.position}: ${damage.reason}; ${describeDamagedOffsets(damage)}`;
}

/** Opening a log found damage (`damage`) that recovery may not cut: the log stays closed. */
export class LogDamagedError extends CorruptLogError {
  readonly damage: LogDamage;

  constructor(damage: LogDamage) {
    super(
      damage.file,
      damage.position,
      `${damage.kind}: ${damage.reason}; ${describeDamagedOffsets(damage)}`,
    );
    this.name = 'LogDamagedError';
    this.damage = damage;
  }
}
