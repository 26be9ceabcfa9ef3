/**
 * SyncScheduler's pipelined group commit (issue 15): an append arriving while a round is in flight
 * gets its own round at once (at most syncRoundsInFlightMax), rounds complete in start order, and a
 * failure fails every waiter. The fdatasync calls are held by the test (the scheduler's test-only
 * sync function), so which round is in flight is decided by the test, never by timing.
 */
import { describe, expect, it } from 'vitest';
import { syncPipelineWaitersMax, syncRoundsInFlightMax } from '../../src/limits.js';
import { InlineSyncBudget } from '../../src/storage/inline-sync.js';
import {
  type InlineSync,
  type SyncFile,
  type SyncFileFunction,
  SyncScheduler,
  type SyncTarget,
} from '../../src/storage/sync-scheduler.js';

interface HeldSync {
  fd: number;
  finish: (error?: Error) => void;
}

interface HarnessOptions {
  inline?: InlineSync;
  /** The files of each round (default one, fd 7); `busy` marks a file another fdatasync writes back. */
  files?: () => SyncFile[];
}

/** A log that is only an end offset, synced by syncs the test finishes one by one. */
function harness(options: HarnessOptions = {}) {
  let end = 0;
  const held: HeldSync[] = [];
  const synced: number[] = [];
  const files = options.files ?? (() => [{ fd: 7, done: () => {} }]);
  const target: SyncTarget = {
    endOffset: () => end,
    takeRound: () => ({ offset: end, files: files() }),
    onSynced: (offset) => synced.push(offset),
  };
  const sync: SyncFileFunction = (fd) =>
    new Promise<void>((resolve, reject) => {
      held.push({ fd, finish: (error) => (error ? reject(error) : resolve()) });
    });
  const scheduler = new SyncScheduler(target, -1, 0, sync, options.inline ?? null);
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

describe('SyncScheduler inline rounds (a lightly loaded always log: fdatasync on the event loop)', () => {
  /** An inline fdatasync that records its calls, fails when told, and advances a fake clock. */
  function inlineHarness(
    budgetOptions: ConstructorParameters<typeof InlineSyncBudget>[0] = {},
    files?: () => SyncFile[],
  ) {
    let nowMs = 0;
    let durationMs = 0.1;
    let failWith: Error | null = null;
    const inlineCalls: number[] = [];
    const budget = new InlineSyncBudget({ now: () => nowMs, ...budgetOptions });
    const inline: InlineSync = {
      budget,
      fdatasync: (fd) => {
        inlineCalls.push(fd);
        nowMs += durationMs;
        if (failWith !== null) throw failWith;
      },
    };
    const base = harness(files === undefined ? { inline } : { inline, files });
    return {
      ...base,
      /** Appends up to `offset` + 1 (offset 1 is the primed round's). */
      append: (offset: number) => base.append(offset + 1),
      /**
       * The first round of a scheduler never runs inline (at open it may write back a whole
       * segment): `prime` runs it in the pool and finishes it, so the tests start at offset 1.
       */
      prime: async () => {
        base.append(1);
        await settle();
        for (const sync of base.held.splice(0)) sync.finish();
        await settle();
      },
      budget,
      inlineCalls,
      advance: (ms: number) => {
        nowMs += ms;
      },
      setDuration: (ms: number) => {
        durationMs = ms;
      },
      failNext: (error: Error) => {
        failWith = error;
      },
    };
  }

  it('a lone append is synced inline: no pool call, acknowledged without waiting for a thread', async () => {
    const { scheduler, held, inlineCalls, append, budget, prime } = inlineHarness();
    await prime();
    const first = append(1);
    await settle();
    expect([first.state, inlineCalls, held.length]).toEqual(['synced', [7], 0]);
    expect([scheduler.durableOffset, scheduler.syncCount, scheduler.inlineSyncCount, budget.calls]).toEqual([
      2, 2, 1, 1,
    ]);
  });

  it('goes to the pool while a round is in flight, once a round acknowledged many appends, and for busy or several files', async () => {
    const { scheduler, held, inlineCalls, append, budget, prime } = inlineHarness();
    await prime();
    // Many appends in one round: the log is loaded, the next round goes to the pool.
    const busy = Array.from({ length: syncPipelineWaitersMax + 1 }, (_, i) => append(i + 1));
    await settle();
    expect(inlineCalls).toHaveLength(1);
    expect(busy.every((outcome) => outcome.state === 'synced')).toBe(true);
    const pooled = append(syncPipelineWaitersMax + 2);
    await settle();
    expect([held.length, pooled.state]).toEqual([1, 'waiting']);
    // While that round is in flight, another append waits (rounds one at a time under load) and is
    // never synced inline ahead of the round in flight.
    const behind = append(syncPipelineWaitersMax + 3);
    await settle();
    expect(inlineCalls).toHaveLength(1);
    held[0]!.finish();
    await settle();
    // That round acknowledged one append: the log is light again, the next round is inline.
    expect([pooled.state, behind.state, inlineCalls.length, held.length]).toEqual(['synced', 'synced', 2, 1]);
    expect([scheduler.syncCount, scheduler.inlineSyncCount, budget.calls]).toEqual([4, 2, 2]);

    const twoFiles = inlineHarness({}, () => [
      { fd: 7, done: () => {} },
      { fd: 8, done: () => {} },
    ]);
    await twoFiles.prime();
    const split = twoFiles.append(1);
    await settle();
    expect([twoFiles.inlineCalls.length, twoFiles.held.map((sync) => sync.fd)]).toEqual([0, [7, 8]]);
    for (const sync of twoFiles.held) sync.finish();
    await settle();
    expect(split.state).toBe('synced');

    const busyFile = inlineHarness({}, () => [{ fd: 7, done: () => {}, busy: true }]);
    await busyFile.prime();
    busyFile.append(1);
    await settle();
    expect([busyFile.inlineCalls.length, busyFile.held.length]).toEqual([0, 1]);
  });

  it('never inline beside a pool round in flight, even while lightly loaded', async () => {
    const { scheduler, held, inlineCalls, append, prime } = inlineHarness();
    await prime();
    scheduler.markDirectoryDirty();
    const first = append(1); // pool: a directory to sync
    await settle();
    expect(held.map((sync) => sync.fd)).toEqual([7]);
    const second = append(2); // lightly loaded: a round may start beside the first, in the pool
    await settle();
    expect(inlineCalls).toHaveLength(0);
    expect(held.map((sync) => sync.fd)).toEqual([7, 7]);
    expect([first.state, second.state, scheduler.durableOffset]).toEqual(['waiting', 'waiting', 1]);
    held[1]!.finish();
    await settle();
    expect(second.state).toBe('waiting'); // completes only after the first
    held[0]!.finish();
    await settle();
    held[2]!.finish(); // the directory
    await settle();
    expect([first.state, second.state, scheduler.durableOffset]).toEqual(['synced', 'synced', 3]);
  });

  it('a directory to sync sends the round to the pool', async () => {
    const { scheduler, held, inlineCalls, append, prime } = inlineHarness();
    await prime();
    scheduler.markDirectoryDirty();
    const first = append(1);
    await settle();
    expect([inlineCalls.length, held.map((sync) => sync.fd)]).toEqual([0, [7]]);
    held[0]!.finish();
    await settle();
    expect(held.map((sync) => sync.fd)).toEqual([7, -1]); // then the directory, fsync'd in the pool
    held[1]!.finish();
    await settle();
    expect(first.state).toBe('synced');
  });

  it('stops once the inline time owed reaches the bucket, and starts again once it drained', async () => {
    const { held, inlineCalls, append, advance, setDuration, budget, prime } = inlineHarness({
      windowMs: 100,
      shareMax: 0.25,
      slowMs: 50, // 10 ms calls are not slow here: only the share stops them
    });
    await prime();
    setDuration(10);
    for (let offset = 1; offset <= 3; offset++) {
      append(offset);
      await settle();
    }
    expect(inlineCalls).toHaveLength(3); // 30 ms owed: over the 25 ms bucket
    const pooled = append(4);
    await settle();
    expect([inlineCalls.length, held.length, pooled.state]).toEqual([3, 1, 'waiting']);
    held[0]!.finish();
    await settle();
    advance(100); // 30 - 100 × 0.25 = 5 ms owed
    const next = append(5);
    await settle();
    expect([inlineCalls.length, next.state, budget.coolDowns]).toEqual([4, 'synced', 0]);
  });

  it('slow calls spread over more than the cool-down span leave inline on; three within it turn it off', async () => {
    const { held, inlineCalls, append, advance, setDuration, budget, prime } = inlineHarness({
      slowMs: 2,
      slowCallsMax: 3,
      coolDownMs: 1000,
      windowMs: 100,
      shareMax: 1,
    });
    await prime();
    setDuration(5);
    append(1);
    await settle();
    advance(600);
    append(2);
    await settle();
    advance(600); // the first slow call is now older than the cool-down
    append(3);
    await settle();
    expect([inlineCalls.length, budget.slowCalls, budget.coolDowns]).toEqual([3, 3, 0]);
    append(4); // three slow calls (started at 605, 1210, 1215) within 1,000 ms
    await settle();
    expect([inlineCalls.length, budget.coolDowns]).toEqual([4, 1]);
    setDuration(0.1);
    const pooled = append(5);
    await settle();
    expect([inlineCalls.length, held.length, pooled.state]).toEqual([4, 1, 'waiting']);
    held[0]!.finish();
    await settle();
    advance(1001);
    const again = append(6);
    await settle();
    expect([inlineCalls.length, again.state]).toEqual([5, 'synced']);
  });

  it('a failed inline fdatasync fails its waiter and every later sync, like a failed pool round', async () => {
    const { scheduler, append, failNext, prime } = inlineHarness();
    await prime();
    failNext(Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' }));
    const first = append(1);
    await settle();
    expect(first.state).toBe('failed');
    expect(scheduler.failed?.code).toBe('STORAGE_IO');
    await expect(scheduler.waitFor(3)).rejects.toThrow(/fdatasync/);
    expect(scheduler.durableOffset).toBe(1);
  });
});
