/**
 * Delayed messages with a real broker process (`spillway broker`) SIGKILLed while they fire:
 *  - 10,000 messages due over ~6 s on 4 partitions, plus one due a year ahead, plus one for a topic
 *    deleted before it is due. The broker is SIGKILLed at random moments while the messages come due
 *    (mid-firing included) and restarted on the same data. Afterwards a consumer reads every partition:
 *    each message is there exactly once, none before its due time (record timestamp = fire time), key
 *    and headers kept; the lateness is measured and printed (no timed assertion: restarts and the
 *    shared machine make it what it is).
 *  - The year-ahead message is still pending after the restarts and listed by `delay stats`.
 *  - The message for the deleted topic is in `__delay_dead`.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Spillway } from '../../../src/client/index.js';
import { BrokerProcess, ensureBuilt, killBrokers, runCli } from '../../cli/cli-process.js';
import { temporaryDirectory } from '../helpers.js';

afterEach(() => killBrokers());

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? 0;
}

describe('delayed messages across broker SIGKILLs', () => {
  it('10k messages fire once each, none early; a year-ahead one survives; a deleted target dead-letters', async () => {
    ensureBuilt();
    const dataDir = temporaryDirectory();
    let broker = await BrokerProcess.start(['--data-dir', dataDir]);
    const port = broker.port;
    const count = 10_000;
    const start = Date.now() + 2500;
    const spanMs = 6000;
    let sw = await Spillway.connect(broker.url);
    await sw.admin.createTopic('d', { partitions: 4 });
    await sw.admin.createTopic('gone', { partitions: 1 });
    const producer = sw.producer({ lingerMs: 2 });
    const sends: Array<Promise<unknown>> = [];
    for (let i = 0; i < count; i++) {
      const deliverAt = start + Math.floor((i * spanMs) / count);
      sends.push(
        producer.send('d', { key: `k${i % 97}`, value: String(i), headers: { n: String(i) }, deliverAt }),
      );
    }
    sends.push(producer.send('d', { value: 'year', delayMs: 365 * 86_400_000 }));
    sends.push(producer.send('gone', { value: 'orphan', key: 'o', delayMs: 1000 }));
    await Promise.all(sends);
    await producer.close();
    await sw.admin.deleteTopic('gone');
    await sw.close();

    // SIGKILL at random moments until everything is due, restarting on the same data each time.
    let kills = 0;
    while (Date.now() < start + spanMs + 300) {
      await sleep(100 + Math.floor(Math.random() * 400));
      await broker.stop('SIGKILL');
      kills++;
      broker = await BrokerProcess.start(['--data-dir', dataDir], { port });
    }
    await sleep(500);

    sw = await Spillway.connect(broker.url);
    const consumer = sw.consumer({ topics: ['d'], from: 'earliest', maxWaitMs: 200 });
    const seen = new Map<number, number>();
    const lateness: number[] = [];
    let early = 0;
    let total = 0;
    const deadline = Date.now() + 30_000;
    for await (const message of consumer) {
      const id = Number(message.value!.toString());
      seen.set(id, (seen.get(id) ?? 0) + 1);
      total++;
      const due = Number(message.headers['sw-original-deliver-at']!.toString());
      expect(message.headers['n']!.toString()).toBe(String(id));
      expect(message.key!.toString()).toBe(`k${id % 97}`);
      expect(message.headers['sw-deliver-at']).toBeUndefined();
      if (message.timestamp < due) early++;
      lateness.push(message.timestamp - due);
      if (total >= count || Date.now() > deadline) break;
    }
    await consumer.close();
    // Anything beyond `count` would be a double: give it a moment to show up.
    await sleep(300);
    const description = await sw.admin.describeTopic('d');
    const stored = description.partitions.reduce((sum, p) => sum + p.logEndOffset, 0);
    const stats = await sw.admin.delayStats();
    const dead = await sw.admin.describeTopic('__delay_dead');
    await sw.close();

    lateness.sort((a, b) => a - b);
    console.log(
      `delay SIGKILL test: ${kills} kills; ${total} fired messages read, ${seen.size} distinct; lateness ms ` +
        `p50 ${percentile(lateness, 0.5)}, p99 ${percentile(lateness, 0.99)}, max ${lateness[lateness.length - 1]} ` +
        '(includes the downtime of the kills)',
    );
    expect(early).toBe(0);
    expect(seen.size).toBe(count);
    expect([...seen.values()].every((times) => times === 1)).toBe(true);
    expect(stored).toBe(count);
    expect(stats).toMatchObject({ pending: 1, later: 1 });
    expect(stats.nextDueMs).toBeGreaterThan(Date.now() + 364 * 86_400_000);
    expect(dead.partitions[0]!.logEndOffset).toBe(1);

    const cli = await runCli(['delay', 'stats', '--broker', broker.url]);
    expect(cli.code).toBe(0);
    expect(JSON.parse(cli.stdout)).toMatchObject({ pending: 1, later: 1 });
    await broker.stop('SIGTERM');
  }, 90_000);
});
