/**
 * The idempotent producer against a broker process SIGKILLed in the middle of a send storm, then
 * started again on the same data directory and port: the producer resends what was not answered
 * (some of it already written before the kill) with the same sequences; the restarted broker
 * rebuilds the producers' sequences from `__producer_state` and the batch headers of the logs'
 * tails, answers the repeats with their original offsets, and the logs hold each message exactly
 * once, in send order per partition, at the offsets send() gave.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type SendResult, Spillway } from '../../src/client/index.js';
import { batchLengthAt } from '../../src/format/batch-header.js';
import { decodeRecords } from '../../src/format/record-batch.js';
import { Broker } from '../../src/spillway-broker.js';
import { BrokerProcess, ensureBuilt } from '../cli/cli-process.js';
import { seededRandom } from '../kill-runner.js';
import { cuttingProxy } from './cutting-proxy.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function partitionRecords(
  broker: Broker,
  topic: string,
  partition: number,
): Promise<Array<[number, string]>> {
  const records: Array<[number, string]> = [];
  let offset = 0;
  for (;;) {
    const result = await broker.messages.fetch(topic, partition, offset, { maxBytes: 4 << 20, maxWaitMs: 0 });
    if (result.batchCount === 0) return records;
    const bytes = result.records;
    for (let position = 0; position < bytes.length; position += batchLengthAt(bytes, position)) {
      for (const record of decodeRecords(bytes, position)) {
        records.push([record.offset, Buffer.from(record.value!).toString()]);
      }
    }
    offset = result.nextOffset;
  }
}

const messageValue = (i: number): string => `${i}:`.padEnd(100, '.');

describe('idempotent producer and a broker SIGKILL', () => {
  it('SIGKILL during the storm, restart, resend: each message once, in send order', async () => {
    ensureBuilt();
    const dataDir = mkdtempSync(join(tmpdir(), 'spillway-idem-kill-'));
    cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
    const args = ['--data-dir', dataDir, '--durability', 'interval'];
    let broker = await BrokerProcess.start(args);
    const port = broker.port;
    cleanups.push(() => void broker.stop('SIGKILL'));
    // Connections also cut at random, before and after the kill: answers lost both ways.
    const proxy = await cuttingProxy(port, seededRandom(11), 0.05);
    const sw = await Spillway.connect(proxy.url, { reconnectBackoffMs: 20, reconnectBackoffMaxMs: 200 });
    cleanups.push(() => sw.close().catch(() => undefined));
    await sw.admin.createTopic('k', { partitions: 3 });
    await sw.admin.describeTopic('k');
    const producer = sw.producer({
      idempotent: true,
      batchBytes: 8192,
      retries: 1_000_000,
      retryBackoffMs: 10,
      retryBackoffMaxMs: 200,
    });
    const total = 60_000;
    let answered = 0;
    // The first one alone: the producer learns the partition count (a failure there fails the send).
    const sends: Array<Promise<SendResult>> = [producer.send('k', { key: 'k0', value: messageValue(0) })];
    await sends[0];
    proxy.start();
    for (let i = 1; i < total; i++) {
      const send = producer.send('k', { key: `k${i % 53}`, value: messageValue(i) });
      send.then(
        () => answered++,
        () => undefined,
      );
      sends.push(send);
      // Sends go on while the broker dies and comes back.
      if (i % 2000 === 1999) await new Promise((resolve) => setImmediate(resolve));
    }
    // Kill once some sends are answered and others are in flight.
    while (answered < total / 4) await new Promise((resolve) => setTimeout(resolve, 2));
    await broker.stop('SIGKILL');
    const answeredAtKill = answered;
    broker = await BrokerProcess.start(args, { port });
    const results = await Promise.all(sends);
    proxy.stop();
    expect(proxy.cuts).toBeGreaterThan(3);
    expect(answeredAtKill).toBeLessThan(total);
    await producer.close();
    await sw.close();
    expect((await broker.stop('SIGTERM')).code).toBe(0);

    const reopened = await Broker.open({ dataDir });
    try {
      const expected: Array<Array<[number, string]>> = [[], [], []];
      results.forEach((result, i) => {
        expected[result.partition]!.push([result.offset, messageValue(i)]);
      });
      for (let partition = 0; partition < 3; partition++) {
        expect(await partitionRecords(reopened, 'k', partition)).toEqual(expected[partition]);
      }
    } finally {
      await reopened.close();
    }
  }, 60_000);
});
