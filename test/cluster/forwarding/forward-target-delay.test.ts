/**
 * The delay requests a forward target takes (forward-target.ts: DELAY_SCHEDULE, DELAY_SCHEDULE_COMMITTED),
 * on one real broker (its own delay service, served at once: no cluster): without a delay service
 * both are refused with INVALID_ARGUMENT naming the request; with it, each reaches it, and
 * DELAY_SCHEDULE_COMMITTED takes only one whole delayed batch stamped by a commit.
 */
import { describe, expect, it } from 'vitest';
import { stampCommittedBatch } from '../../../src/broker/transactions/broker-transactions.js';
import { ForwardTarget } from '../../../src/cluster/forwarding/forward-target.js';
import { BatchAttributes } from '../../../src/format/batch-header.js';
import { encodeBatch } from '../../../src/format/record-batch.js';
import { delayMsHeader } from '../../../src/protocol/reserved-headers.js';
import { openBroker, temporaryDirectory } from '../../broker/helpers.js';

const delayed = (value: string): Uint8Array =>
  encodeBatch([{ value, headers: [[delayMsHeader, '60000']] }], { attributes: BatchAttributes.delayed });

describe('ForwardTarget: delay requests', () => {
  it('refuses both without a delay service; hands them to it once set', async () => {
    const broker = await openBroker(temporaryDirectory());
    await broker.topics.create('t', { partitions: 1 });
    const target = new ForwardTarget(broker);
    const request = { topic: 't', partition: 0 };
    const committed = { ...request, commitMs: Date.now() };

    await expect(target.delaySchedule(request, delayed('a'))).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: expect.stringContaining('DELAY_SCHEDULE: the delay service does not run'),
    });
    await expect(
      target.delayScheduleCommitted(committed, stampCommittedBatch(delayed('b'), 1, 0)),
    ).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: expect.stringContaining('DELAY_SCHEDULE_COMMITTED: the delay service does not run'),
    });
    expect(broker.delay.stats().scheduled).toBe(0);

    target.delay = broker.delay;
    expect(await target.delaySchedule(request, delayed('a'))).toMatchObject({ delayed: true });
    await expect(target.delayScheduleCommitted(committed, delayed('unstamped'))).rejects.toMatchObject({
      code: 'INVALID_BATCH',
    });
    const first = await target.delayScheduleCommitted(committed, stampCommittedBatch(delayed('b'), 1, 0));
    expect(first).toMatchObject({ delayed: true });
    // The service's (id, index) idempotence answers a resend.
    expect(await target.delayScheduleCommitted(committed, stampCommittedBatch(delayed('b'), 1, 0))).toEqual(
      first,
    );
    expect(broker.delay.stats().scheduled).toBe(2);
  });
});
