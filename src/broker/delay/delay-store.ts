/**
 * The three internal logs of delayed messages (docs/STATE.md, "Delayed messages"), each partition 0
 * of an internal topic under `dataDir/topics/`:
 *
 *   `__delay`        the scheduled batches (delay-log.ts), durability `interval` (a produce to an
 *                    `always` topic syncs it before the answer), 32 MiB segments, deleted from the
 *                    front once every message in a segment is handled
 *   `__delay_state`  a state log (state-log.ts) over DelayStateMachine (delay-state.ts): fired
 *                    markers, fences, the clean-close flag; durability `always`
 *   `__delay_dead`   dead letters: due messages whose target topic is gone, durability `always`
 *
 * Opened (and recovered) with the broker, served read-only as internal topics, closed last.
 */
import type { Clock } from '../../clock.js';
import { delaySegmentBytes } from '../../limits.js';
import { PartitionLog } from '../../storage/partition-log.js';
import type { Durability } from '../../storage/sync-scheduler.js';
import type { StateLog } from '../state/state-log.js';
import {
  openStateLog,
  type StateLogPartition,
  type StateLogTuning,
  stateLogDirectory,
} from '../state/state-log-partition.js';
import { type DelayEntry, DelayStateMachine, delayStateCodec } from './delay-state.js';

export const delayTopicName = '__delay';
export const delayStateTopicName = '__delay_state';
export const delayDeadTopicName = '__delay_dead';

export interface DelayStoreOptions {
  dataDir: string;
  tuning?: StateLogTuning;
  checkpointIntervalMs?: number;
  clock?: Clock;
  /** Segment size of `__delay` and `__delay_dead` (tests use small ones). Default delaySegmentBytes. */
  segmentBytes?: number;
  /** StateLogOptions.writeAtOpen (false for a cluster member: the follower may write the log). */
  writeAtOpen?: boolean;
}

async function openDataLog(
  options: DelayStoreOptions,
  name: string,
  durability: Durability,
): Promise<StateLogPartition> {
  const directory = stateLogDirectory(options.dataDir, name);
  const segmentBytes = options.segmentBytes ?? delaySegmentBytes;
  const log = await PartitionLog.open({
    directory,
    durability,
    segmentBytes,
    retentionMs: -1,
    retentionBytes: -1,
    spareSegment: false,
    ...(options.clock !== undefined ? { clock: options.clock } : {}),
    ...(options.checkpointIntervalMs !== undefined
      ? { checkpointIntervalMs: options.checkpointIntervalMs }
      : {}),
  });
  return { log, directory, segmentBytes };
}

export class DelayStore {
  readonly delay: StateLogPartition;
  readonly dead: StateLogPartition;
  readonly statePartition: StateLogPartition;
  /** The running state log and its machine (new ones after `reopen`). */
  state: StateLog<DelayEntry>;
  machine: DelayStateMachine;

  private constructor(
    delay: StateLogPartition,
    dead: StateLogPartition,
    statePartition: StateLogPartition,
    state: StateLog<DelayEntry>,
    machine: DelayStateMachine,
  ) {
    this.delay = delay;
    this.dead = dead;
    this.statePartition = statePartition;
    this.state = state;
    this.machine = machine;
  }

  /**
   * A cluster term starting (broker-delay.ts `startTerm`): the state is recovered again from the
   * `__delay_state` log as it is now (snapshot + replay: what replication copied meanwhile) and
   * written through a new state log with the old one's hooks; the old one is detached.
   */
  reopen(): void {
    const machine = new DelayStateMachine();
    this.state = this.state.reopen(machine);
    this.machine = machine;
  }

  static async open(options: DelayStoreOptions): Promise<DelayStore> {
    const opened: StateLogPartition[] = [];
    try {
      const delay = await openDataLog(options, delayTopicName, 'interval');
      opened.push(delay);
      const dead = await openDataLog(options, delayDeadTopicName, 'always');
      opened.push(dead);
      const machine = new DelayStateMachine();
      const { partition: statePartition, state } = await openStateLog(
        options,
        delayStateTopicName,
        machine,
        delayStateCodec,
      );
      return new DelayStore(delay, dead, statePartition, state, machine);
    } catch (error) {
      for (const partition of opened) await partition.log.close().catch(() => undefined);
      throw error;
    }
  }

  /** Finishes what is in flight, then closes the logs. */
  async close(): Promise<void> {
    const outcomes = await Promise.allSettled([
      this.state.close().then(() => this.statePartition.log.close()),
      this.delay.log.close(),
      this.dead.log.close(),
    ]);
    const failure = outcomes.find((outcome) => outcome.status === 'rejected');
    if (failure !== undefined) throw failure.reason;
  }
}
