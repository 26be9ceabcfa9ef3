/**
 * The forward rewrite of `__delay` on a ManualClock: a message a year ahead in the first segment and a
 * steady flow of short delays behind it; `__delay` (64 KiB segments) stays bounded because the
 * year-ahead message is moved to the log end and the segments behind it are deleted; it stays
 * pending once across a restart, and fires once, at its due time, with its key, value and headers.
 * Crashes in the middle of a rewrite: delay-rewrite-crash.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/clock.js';
import { BatchAttributes, batchLengthAt } from '../../../src/format/batch-header.js';
import { decodeRecords, encodeBatch } from '../../../src/format/record-batch.js';
import { deliverAtHeader } from '../../../src/protocol/reserved-headers.js';
import type { Broker } from '../../../src/spillway-broker.js';
import { openBroker, temporaryDirectory } from '../helpers.js';

const segmentBytes = 64 * 1024;
const yearMs = 365 * 86_400_000;
const hourMs = 3_600_000;

async function until(condition: () => boolean): Promise<void> {
  for (let waited = 0; !condition(); waited += 5) {
    if (waited > 10_000) throw new Error('condition not reached');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

function delayed(items: Array<{ value: string; dueMs: number }>): Uint8Array {
  return encodeBatch(
    items.map((item) => ({
      key: 'k',
      value: item.value,
      headers: [
        [deliverAtHeader, String(item.dueMs)],
        ['h', 'v'],
      ],
    })),
    { attributes: BatchAttributes.delayed },
  );
}

async function values(broker: Broker, topic: string): Promise<Array<{ value: string; headers: string[] }>> {
  const out: Array<{ value: string; headers: string[] }> = [];
  let offset = 0;
  for (;;) {
    const result = await broker.messages.fetch(topic, 0, offset, { maxBytes: 1 << 20, maxWaitMs: 0 });
    if (result.batchCount === 0) return out;
    let position = 0;
    while (position < result.records.length) {
      const length = batchLengthAt(result.records, position);
      for (const record of decodeRecords(result.records.subarray(position, position + length))) {
        out.push({
          value: Buffer.from(record.value!).toString(),
          headers: record.headers.map(([name, value]) => `${name}=${Buffer.from(value ?? []).toString()}`),
        });
      }
      position += length;
    }
    offset = result.nextOffset;
  }
}

describe('forward rewrite of __delay (ManualClock)', () => {
  it('a year-ahead message does not pin the segments behind it', async () => {
    const clock = new ManualClock();
    const dataDir = temporaryDirectory();
    let broker = await openBroker(dataDir, { clock, delaySegmentBytes: segmentBytes });
    await broker.topics.create('t', { partitions: 1 });
    const t0 = clock.nowMs();
    await broker.messages.produce('t', 0, delayed([{ value: 'year', dueMs: t0 + yearMs }]));
    await broker.messages.produce('t', 0, delayed([{ value: 'hour', dueMs: t0 + hourMs }]));
    const value = 'x'.repeat(500);
    let written = 0;
    let fired = 0;
    let largest = 0;
    // 1 MiB of short delays (16 segments' worth), 20 messages due 100 ms ahead every step.
    for (let step = 0; written < 1024 * 1024; step++) {
      const batch = delayed(
        Array.from({ length: 20 }, (_, i) => ({
          value: `${step}/${i}/${value}`,
          dueMs: clock.nowMs() + 100,
        })),
      );
      await broker.messages.produce('t', 0, batch);
      written += batch.length;
      fired += 20;
      clock.advance(100);
      await until(() => broker.delay.stats().fired === fired);
      if (step % 10 === 9) {
        // The cleanup (and the rewrite pass it starts) runs at most once a second.
        clock.advance(1000);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      largest = Math.max(largest, broker.delay.stats().delayLogBytes);
    }
    expect(broker.delay.rewriteStats.moved).toBeGreaterThan(0);
    // Bounded: a few segments, not the 2 MiB written.
    expect(largest).toBeLessThan(8 * segmentBytes);
    // With no message coming any more, the cleanups (once a second) and their rewrite passes bring
    // __delay down to the far messages' segment and the active one.
    for (let second = 0; second < 10; second++) {
      clock.advance(1000);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(broker.delay.stats().delayLogBytes).toBeLessThanOrEqual(2 * segmentBytes);
    expect(broker.delay.stats()).toMatchObject({ pending: 2, later: 1, withinHour: 1 });
    await broker.close();
    broker = await openBroker(dataDir, { clock, delaySegmentBytes: segmentBytes });
    expect(broker.openReport.delay).toMatchObject({ pending: 2 });
    // The hour-ahead message (moved like the year-ahead one) fires once, at its time, unchanged.
    // (A ManualClock runs every interval timer on the way: a year would take too long to step through.)
    clock.advance(t0 + hourMs - 1 - clock.nowMs());
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(broker.delay.stats().fired).toBe(0);
    clock.advance(1);
    await until(() => broker.delay.stats().fired === 1);
    const all = await values(broker, 't');
    const hour = all.filter((message) => message.value === 'hour');
    expect(hour).toHaveLength(1);
    expect(hour[0]!.headers).toContain('h=v');
    expect(hour[0]!.headers).toContain(`sw-original-deliver-at=${t0 + hourMs}`);
    expect(all.length).toBe(fired + 1);
    expect(broker.delay.stats()).toMatchObject({ pending: 1, later: 1, nextDueMs: t0 + yearMs });
  });
});
