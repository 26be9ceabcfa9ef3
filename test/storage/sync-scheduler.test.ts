/**
 * SyncScheduler's pipelined group commit (issue 15): an append arriving while a round is in flight
 * gets its own round at once (at most syncRoundsInFlightMax), rounds complete in start order, and a
 * failure fails every waiter. The fdatasync calls are held by the test (the scheduler's test-only
 * sync function), so which round is in flight is decided by the test, never by timing.
 */
import { describe, expect, it } from 'vitest';
import { syncPipelineWaitersMax, syncRoundsInFlightMax } from '../../src/limits.js';
import { type SyncFileFunction, SyncScheduler, type SyncTarget } from '../../src/storage/sync-scheduler.js';

interface HeldSync {
  fd: number;
  finish: (error?: Error) => void;
}

/** A log that is only an end offset, synced by syncs the test finishes one by one. */
function harness() {
  let end = 0;
  const held: HeldSync[] = [];
  const synced: number[] = [];
  const target: SyncTarget = {
    endOffset: () => end,
    takeRound: () => ({ offset: end, files: [{ fd: 7, done: () => {} }] }),
    onSynced: (offset) => synced.push(offset),
  };
  const sync: SyncFileFunction = (fd) =>
    new Promise<void>((resolve, reject) => {
      held.push({ fd, finish: (error) => (error ? reject(error) : resolve()) });
    });
  const scheduler = new SyncScheduler(target, -1, 0, sync);
  /** Appends up to `offset` and waits for it to be synced; records when it resolved or rejected. */
  const append = (offset: number) => {
    end = offset;
    const outcome: { state: 'waiting' | 'synced' | 'failed' } = { state: 'waiting' };
    scheduler.waitFor(offset).then(
      () => {
        outcome.state = 'synced';
      },
      () => {
        outcome.state = 'failed';
      },
    );
    return outcome;
  };
  return { scheduler, held, synced, append };
}

/** Lets setImmediate callbacks and promise continuations run. */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
}

describe('SyncScheduler rounds', () => {
  it('starts a second round for an append that arrives while one is in flight', async () => {
    const { scheduler, held, append } = harness();
    const first = append(1);
    await settle();
    expect(held).toHaveLength(1);
    const second = append(2);
    await settle();
    // Not held back until the first round ends: its own fdatasync is already running.
    expect(held).toHaveLength(2);
    expect(scheduler.roundsInFlightPeak).toBe(2);
    held[0]!.finish();
    await settle();
    expect([first.state, second.state, scheduler.durableOffset]).toEqual(['synced', 'waiting', 1]);
    held[1]!.finish();
    await settle();
    expect([second.state, scheduler.durableOffset, scheduler.syncCount]).toEqual(['synced', 2, 2]);
  });

  it('counts a later round only once every earlier round completed', async () => {
    const { scheduler, held, synced, append } = harness();
    const first = append(1);
    await settle();
    const second = append(2);
    await settle();
    held[1]!.finish(); // the later round ends first
    await settle();
    expect([first.state, second.state, scheduler.durableOffset, synced]).toEqual([
      'waiting',
      'waiting',
      0,
      [],
    ]);
    held[0]!.finish();
    await settle();
    expect([first.state, second.state, scheduler.durableOffset, synced]).toEqual([
      'synced',
      'synced',
      2,
      [1, 2],
    ]);
  });

  it(`never has more than ${syncRoundsInFlightMax} rounds in flight; the next covers every append since`, async () => {
    const { scheduler, held, append } = harness();
    const outcomes = [append(1)];
    await settle();
    for (let offset = 2; offset <= 6; offset++) {
      outcomes.push(append(offset));
      await settle();
    }
    expect(held).toHaveLength(syncRoundsInFlightMax);
    held[0]!.finish();
    await settle();
    // One more round starts for everything not covered by the round still in flight.
    expect(held).toHaveLength(syncRoundsInFlightMax + 1);
    held[1]!.finish();
    held[2]!.finish();
    await settle();
    expect(outcomes.map((outcome) => outcome.state)).toEqual(Array(6).fill('synced'));
    expect([scheduler.durableOffset, scheduler.syncCount]).toEqual([6, 3]);
    expect(scheduler.roundsInFlightPeak).toBe(syncRoundsInFlightMax);
  });

  it('runs rounds one at a time once a round acknowledged many appends (group commit under load)', async () => {
    const { scheduler, held, append } = harness();
    // One round acknowledges more appends than a lightly loaded log has.
    const busy = Array.from({ length: syncPipelineWaitersMax + 1 }, (_, i) => append(i + 1));
    await settle();
    held[0]!.finish();
    await settle();
    expect(busy.every((outcome) => outcome.state === 'synced')).toBe(true);
    const first = append(syncPipelineWaitersMax + 2);
    await settle();
    const second = append(syncPipelineWaitersMax + 3);
    await settle();
    expect(held).toHaveLength(2); // the second waits for the round in flight to end
    held[1]!.finish();
    await settle();
    expect([first.state, second.state, held.length]).toEqual(['synced', 'waiting', 3]);
    held[2]!.finish();
    await settle();
    expect(second.state).toBe('synced');
    expect(scheduler.roundsInFlightPeak).toBe(1);
  });

  it('starts no round for an append that a round in flight already covers', async () => {
    const { held, append } = harness();
    const first = append(1);
    const second = append(1); // the same end: nothing new to sync
    await settle();
    expect(held).toHaveLength(1);
    held[0]!.finish();
    await settle();
    expect([first.state, second.state, held.length]).toEqual(['synced', 'synced', 1]);
  });

  it('a failed earlier round fails the waiters of the later one too, and every later sync', async () => {
    const { scheduler, held, append } = harness();
    const first = append(1);
    await settle();
    const second = append(2);
    await settle();
    held[1]!.finish();
    held[0]!.finish(Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' }));
    await settle();
    expect([first.state, second.state, scheduler.durableOffset]).toEqual(['failed', 'failed', 0]);
    expect(scheduler.failed?.code).toBe('STORAGE_IO');
    const third = append(3);
    await settle();
    expect(third.state).toBe('failed');
  });

  it('idle() waits for every round in flight', async () => {
    const { scheduler, held, append } = harness();
    append(1);
    await settle();
    append(2);
    await settle();
    let idle = false;
    void scheduler.idle().then(() => {
      idle = true;
    });
    held[0]!.finish();
    await settle();
    expect(idle).toBe(false);
    held[1]!.finish();
    await settle();
    expect(idle).toBe(true);
  });
});
