/**
 * Lag in /metrics and in the queue description: the per-partition lag series stay under
 * metricsLagSeriesMax (the per-group sums stay complete, the omitted series are counted), and a
 * queue partition's lag counts what is not settled, acks above the floor excluded.
 */
import { expect, it } from 'vitest';
import { metricsLagSeriesMax } from '../../src/limits.js';
import type { GroupDescription } from '../../src/protocol/group-api.js';
import { ServerMetrics } from '../../src/server/metrics.js';
import { connect, openBroker } from '../client/helpers.js';

function groupWith(name: string, partitions: number, lagEach: number): GroupDescription {
  return {
    group: name,
    mode: 'group',
    generation: 1,
    topics: ['t'],
    members: [],
    partitions: Array.from({ length: partitions }, (_, partition) => ({
      topic: 't',
      partition,
      member: null,
      committed: 0,
      logEndOffset: lagEach,
      lag: lagEach,
    })),
    lag: partitions * lagEach,
  };
}

it('per-partition lag series are bounded; every group keeps its sum; the omitted series are counted', () => {
  const perGroup = 1000;
  const groupCount = Math.ceil(metricsLagSeriesMax / perGroup) + 3;
  const groups = Array.from({ length: groupCount }, (_, i) =>
    groupWith(`g${String(i).padStart(3, '0')}`, perGroup, 2),
  );
  const text = new ServerMetrics().render(
    () => [],
    () => [],
    undefined,
    () => null,
    () => null,
    () => groups,
  );
  const partitionSeries = text.split('\n').filter((line) => line.startsWith('spillway_group_lag{'));
  expect(partitionSeries.length).toBeLessThanOrEqual(metricsLagSeriesMax);
  expect(partitionSeries.length).toBe(Math.floor(metricsLagSeriesMax / perGroup) * perGroup);
  expect(partitionSeries[0]).toBe('spillway_group_lag{group="g000",topic="t",partition="0"} 2');
  const sums = text.split('\n').filter((line) => line.startsWith('spillway_group_lag_sum{'));
  expect(sums).toHaveLength(groupCount);
  expect(sums).toContain(
    `spillway_group_lag_sum{group="g${String(groupCount - 1).padStart(3, '0')}",mode="group"} ${perGroup * 2}`,
  );
  expect(text).toContain(`spillway_lag_series_omitted ${groupCount * perGroup - partitionSeries.length}`);
});

it('a queue partition: lag is what is not settled (acks above the floor excluded), in /metrics too', async () => {
  const broker = await openBroker();
  const sw = await connect(broker);
  await sw.admin.createTopic('q', { partitions: 1 });
  const producer = sw.producer();
  for (let i = 0; i < 10; i++) await producer.send('q', { value: `m${i}` });
  const consumer = sw.consumer({ group: 'workers', topics: ['q'], mode: 'shared' });
  for await (const message of consumer) {
    if (message.offset === 1 || message.offset === 2) await message.ack();
    if (message.offset >= 2) break;
  }
  const [queue] = await sw.admin.describeQueues('workers');
  expect(queue!.partitions[0]).toMatchObject({ logEndOffset: 10, ackFloor: 0, backlog: 10, lag: 8 });
  expect(queue!.partitions[0]!.inFlight).toBeGreaterThanOrEqual(1);
  const text = new ServerMetrics().render(
    () => [],
    () => [],
    undefined,
    () => null,
    () => null,
    () => [],
    () => broker.queues.describe(),
  );
  expect(text).toContain('spillway_queue_lag{group="workers",topic="q",partition="0"} 8');
  expect(text).toContain('spillway_group_lag_sum{group="workers",mode="shared"} 8');
  await consumer.close();
});
