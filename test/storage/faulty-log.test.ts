import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import { FaultyLog } from '../../src/storage/faulty-log.js';
import { MemoryLog } from '../../src/storage/memory-log.js';
import { makeBatch } from './helpers.js';

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return 'none';
  } catch (error) {
    return (error as { code?: string }).code ?? String(error);
  }
}

/** Lets promise continuations run. */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
}

describe('FaultyLog', () => {
  it('answers as the wrapped log without faults', async () => {
    const inner = new MemoryLog({ retentionMs: 10 });
    const log = new FaultyLog(inner, new ManualClock());
    expect(await log.append(makeBatch('a', 2, 1))).toEqual({
      baseOffset: 0,
      lastOffset: 1,
      durability: 'none',
    });
    await log.append(makeBatch('b', 1, 100));
    expect([log.logStartOffset, log.logEndOffset, log.durableOffset]).toEqual([0, 3, 3]);
    expect([log.sizeBytes, log.segmentCount]).toEqual([inner.sizeBytes, 2]);
    expect(log.read(0, 1 << 20)).toEqual(inner.read(0, 1 << 20));
    expect(log.offsetForTime(50)).toBe(2);
    expect(log.recovery).toBe(inner.recovery);
    expect(log.applyRetention(1_000)).toMatchObject({ deletedSegments: 1, logStartOffset: 2 });
    await log.flush();
    log.truncateTo(2);
    expect(log.logEndOffset).toBe(2);
    expect(log.injectedCount).toBe(0);
    await log.close();
    expect(await codeOf(log.append(makeBatch('c')))).toBe('LOG_CLOSED');
  });

  it('fails calls on schedule: after n calls, for m calls, with typed storage errors', async () => {
    const log = new FaultyLog(new MemoryLog());
    log.fail('append', 'ENOSPC', { after: 1, times: 2 });
    const codes: string[] = [];
    for (let i = 0; i < 4; i++) codes.push(await codeOf(log.append(makeBatch(`${i}`))));
    expect(codes).toEqual(['none', 'STORAGE_FULL', 'STORAGE_FULL', 'none']);
    // Failed appends wrote nothing.
    expect(log.logEndOffset).toBe(2);
    log.fail('flush', 'EIO', { times: Number.POSITIVE_INFINITY });
    expect(await codeOf(log.flush())).toBe('STORAGE_IO');
    expect(await codeOf(log.flush())).toBe('STORAGE_IO');
    log.heal();
    expect(await codeOf(log.flush())).toBe('none');
    log.fail('retention', 'ENOSPC');
    expect(() => log.applyRetention(0)).toThrow(expect.objectContaining({ code: 'STORAGE_FULL' }));
    expect(log.applyRetention(0).deletedSegments).toBe(0);
    expect(log.injectedCount).toBe(5);
    expect(() => log.fail('append', 'EIO', { after: -1 })).toThrow(
      expect.objectContaining({ code: 'INVALID_ARGUMENT' }),
    );
    expect(() => log.delay('sync', 1.5)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });

  it('a sync fault appends, fails the acknowledgement and holds durableOffset until healed', async () => {
    const log = new FaultyLog(new MemoryLog());
    await log.append(makeBatch('a'));
    log.fail('sync', 'EIO');
    expect(await codeOf(log.append(makeBatch('b')))).toBe('STORAGE_IO');
    await log.append(makeBatch('c'));
    expect([log.logEndOffset, log.durableOffset]).toEqual([3, 1]);
    expect(log.read(1, 1 << 20).batchCount).toBe(2);
    log.heal();
    expect(log.durableOffset).toBe(3);
  });

  it('delays acknowledgements on the clock, holding durableOffset below them', async () => {
    const clock = new ManualClock();
    const log = new FaultyLog(new MemoryLog({ durability: 'always' }), clock);
    log.delay('sync', 100);
    const acks: number[] = [];
    const first = log.append(makeBatch('a')).then((result) => acks.push(result.baseOffset));
    clock.advance(50);
    const second = log.append(makeBatch('b')).then((result) => acks.push(result.baseOffset));
    await settle();
    expect([log.logEndOffset, log.durableOffset, log.heldAckCount]).toEqual([2, 0, 2]);
    clock.advance(50);
    await first;
    expect([log.durableOffset, log.heldAckCount]).toEqual([1, 1]);
    clock.advance(49);
    await settle();
    expect(acks).toEqual([0]);
    clock.advance(1);
    await second;
    expect([acks, log.durableOffset]).toEqual([[0, 1], 2]);
    log.delay('sync', 0);
    expect(await log.append(makeBatch('c'))).toMatchObject({ baseOffset: 2 });
  });

  it('close answers held acknowledgements and ends append delays', async () => {
    const clock = new ManualClock();
    const log = new FaultyLog(new MemoryLog(), clock);
    log.delay('sync', 1_000);
    const held = log.append(makeBatch('a'));
    log.delay('append', 1_000);
    const delayed = log.append(makeBatch('b'));
    await log.close();
    expect(await held).toMatchObject({ baseOffset: 0 });
    expect(await codeOf(delayed)).toBe('LOG_CLOSED');
    expect(clock.pendingTimerCount).toBe(0);
  });
});
