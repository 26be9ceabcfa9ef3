/**
 * Tells a lost internal state log from a new one. `__metadata` records every state log the broker
 * creates (metadata-state.ts, entry `state-log`), and a state log is registered only after it holds
 * a snapshot (an empty one when new), so from then on its log is never empty: segments are deleted
 * only behind the older of two snapshots (state-log.ts). An empty or missing log whose name is
 * registered is therefore lost data (a deleted directory, a restore that missed it), and opening it
 * as new would silently forget committed offsets, ack state, producer ids or timers: the broker refuses
 * with CORRUPT_LOG naming the directory, unless the operator asks for that log to start afresh
 * (`BrokerOptions.resetStateLogs`, CLI `--reset-state-log NAME`), which is then reported.
 *
 * A registered log that still has a snapshot but lost segments at the front is caught by recovery
 * itself (state-log-recovery.ts: a front-deleted log without a usable snapshot is CORRUPT_LOG).
 */
import { CorruptLogError } from '../../errors.js';
import type { MetadataStore } from '../metadata-store.js';
import type { OpenFinding } from '../open-report.js';
import type { StateLog } from './state-log.js';
import type { StateLogPartition } from './state-log-partition.js';

export interface StateLogGuardOptions<Entry> {
  metadata: MetadataStore;
  /** The internal topic name, `__...`. */
  name: string;
  partition: StateLogPartition;
  state: StateLog<Entry>;
  /** What the log holds, for the operator ("committed offsets of consumer groups"). */
  holds: string;
  /** Names of the state logs the operator allows to start empty although registered. */
  resetStateLogs: ReadonlySet<string>;
  nowMs: number;
}

/**
 * Checks state log `name` right after it was opened (nothing written yet) and registers it when new.
 * Returns a finding for the open report when it did something worth saying.
 */
export async function guardStateLog<Entry>(
  options: StateLogGuardOptions<Entry>,
): Promise<OpenFinding | null> {
  const { metadata, name, partition, state } = options;
  const registered = metadata.stateLog(name);
  const empty = partition.log.logEndOffset === 0;
  if (registered !== undefined && !empty) return null;
  if (registered !== undefined && !options.resetStateLogs.has(name)) {
    throw new CorruptLogError(
      partition.directory,
      0,
      `state log ${name} is empty or missing, but the broker created it at ${new Date(registered.createdAtMs).toISOString()}: its ${options.holds} would be lost. Restore ${partition.directory} from a backup, or start the broker once with --reset-state-log ${name} to begin it empty`,
    );
  }
  if (empty) await state.snapshot();
  await metadata.registerStateLog(name, options.nowMs);
  if (registered !== undefined) {
    return {
      severity: 'warning',
      what: `state log ${name} was empty or missing and was started afresh as asked (--reset-state-log): ${options.holds} recorded before ${new Date(options.nowMs).toISOString()} are gone`,
      fix: 'nothing to do; remove --reset-state-log from the command line',
    };
  }
  return null;
}
