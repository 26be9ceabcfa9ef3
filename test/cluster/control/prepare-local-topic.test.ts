/**
 * `prepareLocalTopic` (src/cluster/control/broker-cluster.ts) on a real broker, without etcd: the
 * local topic made for a cluster record carries the record's creation time; until the data plane
 * applies an assignment its partitions refuse produces with NOT_LEADER (retriable) instead of
 * appending unreplicated; a local topic of an earlier incarnation (created before the record) is
 * deleted with its data, the current one kept, an internal topic never touched.
 */
import { describe, expect, test } from 'vitest';
import { prepareLocalTopic } from '../../../src/cluster/control/broker-cluster.js';
import type { TopicRecord } from '../../../src/cluster/control/cluster-records.js';
import { batchOf, openBroker, readAll, rejectedCode, temporaryDirectory } from '../../broker/helpers.js';

const record = (createdAtMs: number, partitions = 2): TopicRecord => ({
  partitions,
  replicationFactor: 1,
  minInSyncReplicas: 1,
  createdAtMs,
  config: {},
});

describe('prepareLocalTopic', () => {
  test('new partitions refuse produces until assigned; an earlier incarnation is replaced, the current one kept', async () => {
    const broker = await openBroker(temporaryDirectory());
    await prepareLocalTopic(broker, 't', record(5_000));
    expect(broker.topics.describe('t')).toMatchObject({ partitionCount: 2, createdAtMs: 5_000 });
    expect(await rejectedCode(broker.messages.produce('t', 1, batchOf('x')))).toBe('NOT_LEADER');
    // Grown by the record: the new partition waits for its assignment too.
    await prepareLocalTopic(broker, 't', record(5_000, 3));
    expect(await rejectedCode(broker.messages.produce('t', 2, batchOf('x')))).toBe('NOT_LEADER');

    // A local topic from before the record (made by hand here, with data): an earlier incarnation.
    await broker.topics.create('again', { partitions: 1 }, 1_000);
    await broker.messages.produce('again', 0, batchOf('old', 2));
    await prepareLocalTopic(broker, 'again', record(9_000, 1));
    expect(broker.topics.describe('again').createdAtMs).toBe(9_000);
    expect(await readAll(broker, 'again', 0)).toEqual([]);
    // The current incarnation, prepared again (a restart, a later pass): kept as it is.
    await prepareLocalTopic(broker, 'again', record(9_000, 1));
    expect(broker.topics.describe('again').createdAtMs).toBe(9_000);
    // Internal topics are the broker's own: never replaced, whatever the record says.
    const internal = broker.topics.describe('__consumer_offsets').createdAtMs;
    await prepareLocalTopic(broker, '__consumer_offsets', record(internal + 1, 1));
    expect(broker.topics.describe('__consumer_offsets').createdAtMs).toBe(internal);
  });
});
