/**
 * Repair of a damaged partition log, only ever on an operator's request (`spillway repair`): opens
 * the log and, while the open finds damage (log-loader.ts), sets the damaged range aside into
 * `quarantine/` (quarantine.ts: moved or copied, never deleted) and tries again. Returns the opened
 * log and exactly which offsets were set aside. A log with nothing wrong opens unchanged, so
 * repairing after restoring lost files from a backup sets nothing aside.
 *
 * Not concurrent with anything else on the same directory: the caller holds the log closed.
 */
import { CorruptLogError } from '../errors.js';
import { repairStepsMax } from '../limits.js';
import { LogDamagedError } from './log-damage.js';
import { PartitionLog, type PartitionLogOptions } from './partition-log.js';
import { type QuarantinedRange, quarantineDamage } from './quarantine.js';

export interface RepairedLog {
  log: PartitionLog;
  /** The ranges set aside, in the order found (empty when the log opened as it was). */
  setAside: QuarantinedRange[];
}

export async function repairPartitionLog(
  options: PartitionLogOptions,
  nowMs = Date.now(),
): Promise<RepairedLog> {
  const setAside: QuarantinedRange[] = [];
  let previous: string | null = null;
  for (let step = 0; step <= repairStepsMax; step++) {
    try {
      const log = await PartitionLog.open(options);
      return { log, setAside };
    } catch (error) {
      if (!(error instanceof LogDamagedError)) throw error;
      const { damage } = error;
      const key = `${damage.file}:${damage.position}:${damage.fromOffset}:${damage.toOffset}`;
      if (key === previous) {
        // The step before did not change what the open finds: stop rather than loop.
        throw new CorruptLogError(damage.file, damage.position, `repair made no progress: ${damage.reason}`);
      }
      previous = key;
      setAside.push(quarantineDamage(options.directory, damage, nowMs));
    }
  }
  throw new CorruptLogError(
    options.directory,
    0,
    `more than ${repairStepsMax} damaged ranges: repair stopped (what it set aside so far is in quarantine/)`,
  );
}
