/** QueueConsumer against a real broker in this process: shared and key_shared, ack, nack, DLQ. */
import { describe, expect, it } from 'vitest';
import type { ConsumedMessage } from '../../src/client/message.js';
import type { QueueConsumer } from '../../src/client/queue-consumer.js';
import { connect, openBroker } from './helpers.js';

async function take(consumer: QueueConsumer, count: number): Promise<ConsumedMessage[]> {
  const taken: ConsumedMessage[] = [];
  while (taken.length < count) {
    const next = await consumer.next();
    if (next.done) break;
    taken.push(next.value);
  }
  return taken;
}

describe('QueueConsumer', () => {
  it('shares the messages of a topic among members, each acked message once', async () => {
    const broker = await openBroker();
    const client = await connect(broker);
    await client.admin.createTopic('jobs', { partitions: 3 });
    const producer = client.producer();
    for (let i = 0; i < 300; i++) void producer.send('jobs', { key: `k${i % 17}`, value: `m${i}` });
    await producer.flush();
    const other = await connect(broker);
    const a = client.consumer({ group: 'g', topics: ['jobs'], mode: 'shared', maxMessages: 10 });
    const b = other.consumer({ group: 'g', topics: ['jobs'], mode: 'shared', maxMessages: 10 });
    const seen = new Map<string, number>();
    const drain = async (consumer: QueueConsumer, count: number) => {
      for (const message of await take(consumer, count)) {
        const value = message.value!.toString();
        seen.set(value, (seen.get(value) ?? 0) + 1);
        await message.ack();
      }
    };
    await Promise.all([drain(a, 150), drain(b, 150)]);
    expect(seen.size).toBe(300);
    expect([...seen.values()].every((count) => count === 1)).toBe(true);
    const [description] = broker.queues.describe('g');
    expect(description!.partitions.reduce((sum, p) => sum + p.ackFloor, 0)).toBe(300);
  });

  it('delivers a nacked message again with deliveryCount + 1, then dead-letters it', async () => {
    const broker = await openBroker();
    const client = await connect(broker);
    await client.admin.createTopic('work', { partitions: 1 });
    const producer = client.producer();
    await producer.send('work', { key: 'a', value: 'poison', headers: { h: 'v' } });
    const consumer = client.consumer({
      group: 'g',
      topics: ['work'],
      mode: 'shared',
      maxDeliveries: 3,
      retryBackoffMs: [0],
    });
    const counts: number[] = [];
    for (let i = 0; i < 3; i++) {
      const [message] = await take(consumer, 1);
      counts.push(message!.deliveryCount);
      await message!.nack({ error: `failure ${i}` });
    }
    expect(counts).toEqual([1, 2, 3]);
    const dead = client.consumer({ topics: ['work.dlq'], from: 'earliest' });
    const letter = (await dead.next()).value as ConsumedMessage;
    expect(letter.value!.toString()).toBe('poison');
    expect(letter.key!.toString()).toBe('a');
    expect(letter.headers['h']!.toString()).toBe('v');
    expect(letter.headers['spillway-dlq-topic']!.toString()).toBe('work');
    expect(letter.headers['spillway-dlq-offset']!.toString()).toBe('0');
    expect(letter.headers['spillway-dlq-delivery-count']!.toString()).toBe('3');
    expect(letter.headers['spillway-dlq-error']!.toString()).toBe('failure 2');
    await dead.close();
  });
});
