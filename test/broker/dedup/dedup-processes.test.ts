/**
 * Msg-id dedup with a real broker process (`spillway broker`), SIGKILLed while a producer has
 * batches in flight: the producer retries the batches whose answers were lost (some were appended,
 * some even indexed, before the kill), the broker comes back on the same port, and every message is
 * sent once more after the restart on another partition. The log then holds each msgId exactly once,
 * and every send of a msgId acknowledged before the kill resolves with the same position again.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Spillway } from '../../../src/client/index.js';
import { BrokerProcess, ensureBuilt } from '../../cli/cli-process.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function temporaryDirectory(): string {
  const path = mkdtempSync(join(tmpdir(), 'spillway-dedup-'));
  cleanups.push(() => rmSync(path, { recursive: true, force: true }));
  return path;
}

interface HttpMessage {
  offset: number;
  value: string;
  headers: Record<string, string>;
}

/** Every message of a partition over HTTP. */
async function readPartition(port: number, topic: string, partition: number): Promise<HttpMessage[]> {
  const messages: HttpMessage[] = [];
  let offset = 0;
  for (;;) {
    const response = await fetch(
      `http://127.0.0.1:${port}/v1/topics/${topic}/partitions/${partition}/messages?offset=${offset}&maxMessages=5000&maxWaitMs=0`,
    );
    const body = (await response.json()) as { messages: HttpMessage[]; nextOffset: number };
    if (body.messages.length === 0) return messages;
    messages.push(...body.messages);
    offset = body.nextOffset;
  }
}

describe('msg-id dedup across a SIGKILL of the broker', () => {
  it('retried and resent copies are folded; each msgId is in the log once', async () => {
    ensureBuilt();
    const dataDir = temporaryDirectory();
    const args = ['--data-dir', dataDir, '--durability', 'always'];
    let broker = await BrokerProcess.start(args);
    const port = broker.port;
    cleanups.push(() => void broker.stop('SIGKILL'));
    const sw = await Spillway.connect(broker.url);
    cleanups.push(() => sw.close());
    const partitions = 3;
    await sw.admin.createTopic('orders', { partitions, dedupWindowMs: 600_000 });
    const producer = sw.producer({
      lingerMs: 1,
      batchBytes: 4096,
      retryBackoffMs: 50,
      retryBackoffMaxMs: 500,
    });
    const total = 6000;
    const firstAnswers = new Map<number, string>();
    const sends = Array.from({ length: total }, (_, i) =>
      producer.send('orders', { key: `k${i % 11}`, value: `v${i}`, msgId: `m${i}` }).then((ack) => {
        firstAnswers.set(i, `${ack.partition}/${ack.offset}`);
      }),
    );
    while (firstAnswers.size < total / 4) await new Promise((resolve) => setTimeout(resolve, 2));
    const ackedBeforeKill = new Map(firstAnswers);
    await broker.stop('SIGKILL');
    broker = await BrokerProcess.start(args, { port });
    const outcomes = await Promise.allSettled(sends);
    expect(outcomes.filter((outcome) => outcome.status === 'rejected')).toEqual([]);

    // Everything once more, keyed differently (other partitions): folded onto the first copies.
    const again = await Promise.all(
      Array.from({ length: total }, (_, i) =>
        producer.send('orders', { key: `other${i}`, value: `v${i} again`, msgId: `m${i}` }),
      ),
    );
    for (const [i, position] of ackedBeforeKill) {
      expect(`${again[i]!.partition}/${again[i]!.offset}`).toBe(position);
    }
    for (let i = 0; i < total; i++) {
      expect(`${again[i]!.partition}/${again[i]!.offset}`).toBe(firstAnswers.get(i));
    }

    const seen = new Map<string, string>();
    for (let partition = 0; partition < partitions; partition++) {
      for (const message of await readPartition(port, 'orders', partition)) {
        const msgId = message.headers['sw-msg-id']!;
        expect(seen.has(msgId), `${msgId} twice`).toBe(false);
        seen.set(msgId, `${partition}/${message.offset}`);
        expect(message.value).toBe(`v${msgId.slice(1)}`);
      }
    }
    expect(seen.size).toBe(total);
    for (let i = 0; i < total; i++) expect(seen.get(`m${i}`)).toBe(firstAnswers.get(i));
  }, 120_000);
});
