/**
 * Queue consumption (shared mode, src/broker/queues/): messages acked per second with per-message
 * acks, and how late a redelivery comes after its ack timeout.
 *
 * Throughput: a broker in this process (topic `durability: none`, 4 partitions; the `__queue_state`
 * log is `always`, so every ACK is made durable by group commit), N messages of 100 B produced first,
 * then C consumers (in-process clients, each its own session, all on this one event loop) take them
 * with `for await`, calling `msg.ack()` on each without awaiting it (the consumer gathers the acks of
 * one turn into one QUEUE_ACK of ranges). The time runs from the first receive to the last ack
 * confirmed durable. Target: >= 500k msg/s with 1 consumer.
 *
 * Redelivery lateness: 2000 messages received in 20 receives 10 ms apart with ackTimeoutMs 200, never
 * acked; a consumer long-polls and records when each comes again. Lateness = time it came again -
 * (time first received + 200 ms). Target: p99 < 50 ms.
 */
import * as path from 'node:path';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { Spillway } from '../../src/client/index.js';
import type { QueueConsumer } from '../../src/client/queue-consumer.js';
import { encodeBatch } from '../../src/format/record-batch.js';
import { Broker } from '../../src/spillway-broker.js';
import { type BenchContext, type BenchRow, type BenchSuite, median } from '../report.js';

const suiteName = 'queues';
const value = 'v'.repeat(100);
const partitions = 4;

interface Parameters {
  runs: number;
  messages: number;
}
const fullParameters: Parameters = { runs: 3, messages: 500_000 };
const quickParameters: Parameters = { runs: 1, messages: 20_000 };

let directoryNumber = 0;

async function openBroker(context: BenchContext): Promise<Broker> {
  return Broker.open({
    dataDir: path.join(context.scratchDir, `queues-${directoryNumber++}`),
    durability: 'none',
    segmentBytes: 256 * 1024 * 1024,
  });
}

async function fill(broker: Broker, topic: string, messages: number): Promise<void> {
  await broker.topics.create(topic, { partitions, durability: 'none' });
  const perBatch = Math.max(1, Math.min(1000, Math.floor(messages / partitions / 4)));
  const batch = encodeBatch(Array.from({ length: perBatch }, () => ({ value })));
  for (let sent = 0, index = 0; sent < messages; sent += perBatch, index++) {
    await broker.messages.produce(topic, index % partitions, batch);
  }
}

/** Takes messages until the consumer is closed, acking each without awaiting. */
async function drain(consumer: QueueConsumer, onAcked: () => void): Promise<void> {
  for (;;) {
    const next = await consumer.next();
    if (next.done) return;
    next.value.ack().then(onAcked, () => undefined);
  }
}

async function throughputRun(context: BenchContext, consumers: number, messages: number): Promise<number> {
  const broker = await openBroker(context);
  try {
    await fill(broker, 'q', messages);
    const clients = await Promise.all(Array.from({ length: consumers }, () => Spillway.connect(broker)));
    let acked = 0;
    let allAcked: () => void = () => undefined;
    const done = new Promise<void>((resolve) => {
      allAcked = resolve;
    });
    const onAcked = (): void => {
      if (++acked === messages) allAcked();
    };
    const startedAt = performance.now();
    const queueConsumers = clients.map((client) =>
      client.consumer({
        group: 'bench',
        topics: ['q'],
        mode: 'shared',
        maxMessages: 2000,
        bufferMessagesMax: 8192,
        maxWaitMs: 20,
      }),
    );
    const loops = queueConsumers.map((consumer) => drain(consumer, onAcked));
    await done;
    const seconds = (performance.now() - startedAt) / 1000;
    await Promise.all(queueConsumers.map((consumer) => consumer.close()));
    await Promise.all(loops);
    await Promise.all(clients.map((client) => client.close()));
    return messages / seconds;
  } finally {
    await broker.close();
  }
}

async function latenessRun(context: BenchContext): Promise<number[]> {
  const broker = await openBroker(context);
  const ackTimeoutMs = 200;
  try {
    await fill(broker, 'late', 2000);
    const session = broker.sessions.open({ kind: 'in-process', transport: null });
    const request = {
      group: 'late',
      topic: 'late',
      mode: 'shared' as const,
      max: 100,
      waitMs: 0,
      ackTimeoutMs,
    };
    const firstAt = new Map<string, number>();
    for (let i = 0; i < 20; i++) {
      const result = await broker.queues.receive(session, request);
      const now = performance.now();
      for (const part of result.partitions) {
        for (const offset of part.offsets) firstAt.set(`${part.partition}/${offset}`, now);
      }
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    const lateness: number[] = [];
    const deadline = performance.now() + 5000;
    while (lateness.length < firstAt.size && performance.now() < deadline) {
      const result = await broker.queues.receive(session, {
        ...request,
        max: 10_000,
        waitMs: 1000,
        ackTimeoutMs: 60_000,
      });
      const now = performance.now();
      for (const part of result.partitions) {
        part.offsets.forEach((offset, i) => {
          const first = firstAt.get(`${part.partition}/${offset}`);
          if (first !== undefined && part.deliveryCounts[i] === 2)
            lateness.push(now - (first + ackTimeoutMs));
        });
      }
    }
    await session.close();
    return lateness;
  } finally {
    await broker.close();
  }
}

function percentile(values: number[], fraction: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(fraction * sorted.length))]!;
}

export const suite: BenchSuite = {
  name: suiteName,
  async run(context: BenchContext): Promise<BenchRow[]> {
    const parameters = context.quick ? quickParameters : fullParameters;
    const rows: BenchRow[] = [];
    for (const consumers of [1, 4]) {
      const rates: number[] = [];
      for (let i = 0; i < parameters.runs; i++) {
        await yieldToEventLoop();
        const rate = await throughputRun(context, consumers, parameters.messages);
        rates.push(rate);
        context.log(`queues: ${consumers} consumer(s): ${Math.round(rate)} msg/s acked`);
      }
      rows.push({
        suite: suiteName,
        name: `shared, per-message ack, 100 B, ${consumers} consumer(s) in process`,
        value: Math.round(median(rates)),
        unit: 'msg/s',
        detail: `${parameters.messages} messages, ${partitions} partitions, acks durable in __queue_state (always); runs ${rates.map((rate) => Math.round(rate)).join('/')}; target >= 500000 with 1 consumer`,
      });
    }
    const lateness = await latenessRun(context);
    rows.push({
      suite: suiteName,
      name: 'redelivery lateness after ack timeout (200 ms), p99',
      value: Number(percentile(lateness, 0.99).toFixed(1)),
      unit: 'ms',
      detail: `${lateness.length} redeliveries; p50 ${percentile(lateness, 0.5).toFixed(1)} ms, max ${Math.max(...lateness).toFixed(1)} ms; target p99 < 50 ms`,
    });
    return rows;
  },
};
