/** The message contract (ack/nack/deliveryCount) on the log consumer (no group): what settling means there. */
import { describe, expect, test } from 'vitest';
import type { ConsumedMessage, Consumer, Spillway } from '../../src/client/index.js';
import { SpillwayError } from '../../src/errors.js';
import { connect, openBroker } from './helpers.js';

async function take(consumer: Consumer, count: number): Promise<ConsumedMessage[]> {
  const messages: ConsumedMessage[] = [];
  while (messages.length < count) {
    const result = await consumer.next();
    if (result.done) break;
    messages.push(result.value);
  }
  return messages;
}

async function setup(partitions = 2): Promise<Spillway> {
  const broker = await openBroker();
  const sw = await connect(broker);
  await sw.admin.createTopic('t', { partitions });
  return sw;
}

async function produce(sw: Spillway, partition: number, values: string[]): Promise<void> {
  const producer = sw.producer();
  await Promise.all(values.map((value) => producer.send('t', { partition, value })));
}

function summary(messages: ConsumedMessage[]): string[] {
  return messages.map((m) => `${m.partition}@${m.offset}x${m.deliveryCount}`);
}

async function rejection(promise: Promise<unknown>): Promise<SpillwayError> {
  const error = await promise.then(
    () => null,
    (reason: unknown) => reason,
  );
  expect(error).toBeInstanceOf(SpillwayError);
  return error as SpillwayError;
}

describe('message settling on the log consumer', () => {
  test('ack resolves; a second ack is the same promise; a nack after an ack is refused', async () => {
    const sw = await setup(1);
    await produce(sw, 0, ['a', 'b']);
    const consumer = sw.consumer({ topics: ['t'], from: 'earliest' });
    const [first, second] = await take(consumer, 2);
    expect(first!.deliveryCount).toBe(1);
    expect(first!.settled).toBeNull();
    const ack = first!.ack();
    expect(first!.ack()).toBe(ack);
    await ack;
    expect(first!.settled).toBe('ack');
    expect((await rejection(first!.nack())).code).toBe('INVALID_ARGUMENT');
    // A nack with bad options is refused before it settles anything: the message can still be acked.
    expect((await rejection(second!.nack({ delayMs: -1 }))).code).toBe('INVALID_ARGUMENT');
    expect((await rejection(second!.nack({ error: 5 as unknown as string }))).code).toBe('INVALID_ARGUMENT');
    expect(second!.settled).toBeNull();
    await second!.ack();
    expect(second!.settled).toBe('ack');
    await consumer.close();
  });

  test('nack rewinds its partition: it and the later messages come again with deliveryCount + 1', async () => {
    const sw = await setup(2);
    await produce(sw, 0, ['0', '1', '2', '3', '4', '5']);
    const consumer = sw.consumer({ topics: ['t'], partitions: [0], from: 'earliest', maxWaitMs: 50 });
    const firstPass = await take(consumer, 6);
    expect(summary(firstPass)).toEqual(['0@0x1', '0@1x1', '0@2x1', '0@3x1', '0@4x1', '0@5x1']);
    await firstPass[0]!.ack();
    await firstPass[3]!.nack({ error: 'boom' });
    expect(firstPass[3]!.settled).toBe('nack');
    // Offset 4 was already rewound past: its nack adds nothing.
    await firstPass[4]!.nack();
    const secondPass = await take(consumer, 3);
    expect(summary(secondPass)).toEqual(['0@3x2', '0@4x2', '0@5x2']);
    expect(secondPass.map((m) => m.value!.toString())).toEqual(['3', '4', '5']);
    // Rewinding again inside the redelivered range counts a third delivery for what it covers.
    await secondPass[1]!.nack();
    const thirdPass = await take(consumer, 2);
    expect(summary(thirdPass)).toEqual(['0@4x3', '0@5x3']);
    // Past the rewound ranges, deliveries count 1 again.
    await produce(sw, 0, ['6']);
    expect(summary(await take(consumer, 1))).toEqual(['0@6x1']);
    await consumer.close();
    expect((await rejection(thirdPass[0]!.nack())).code).toBe('CONNECTION_CLOSED');
  });

  test('a rewind drops what was buffered for that partition only; delayMs holds the partition back', async () => {
    const sw = await setup(2);
    await produce(sw, 0, ['a0', 'a1', 'a2']);
    await produce(sw, 1, ['b0', 'b1', 'b2']);
    const consumer = sw.consumer({ topics: ['t'], from: 'earliest', maxWaitMs: 50 });
    const messages: ConsumedMessage[] = [];
    // Take until the first message of partition 0, then nack it while the rest is buffered.
    while (!messages.some((m) => m.partition === 0)) messages.push(...(await take(consumer, 1)));
    const zero = messages.find((m) => m.partition === 0)!;
    await zero.nack();
    const rest = await take(consumer, 6 - messages.length + 1);
    const all = [...messages, ...rest];
    const partition0 = all.filter((m) => m.partition === 0);
    expect(summary(partition0)).toEqual(['0@0x1', '0@0x2', '0@1x1', '0@2x1']);
    expect(summary(all.filter((m) => m.partition === 1))).toEqual(['1@0x1', '1@1x1', '1@2x1']);
    // A nack with a long delay: partition 0 is not read again while partition 1 goes on.
    await partition0[3]!.nack({ delayMs: 3_600_000 });
    await produce(sw, 1, ['b3']);
    expect(summary(await take(consumer, 1))).toEqual(['1@3x1']);
    expect(consumer.assignment()).toContainEqual({ topic: 't', partition: 0, position: 2 });
    await consumer.close();
  });
});
