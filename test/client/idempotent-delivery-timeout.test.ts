/**
 * An idempotent producer whose broker keeps answering UNKNOWN_PRODUCER_ID ends its resends at
 * deliveryTimeoutMs (docs/CLUSTER.md, "Built: idempotent producers"): two real brokers, INIT_PRODUCER
 * answered by one and PRODUCE by the other, which never issued the id (what a cluster did before
 * producer ids were cluster-wide). Before the fix the producer registered and resent for ever.
 */
import { expect, test } from 'vitest';
import { connect, delegate, openBroker } from './helpers.js';

test('resends in new sessions stop at deliveryTimeoutMs with the typed error', async () => {
  const issuing = await openBroker();
  const writing = await openBroker();
  await writing.topics.create('t');
  let registrations = 0;
  const split = {
    ...delegate(writing),
    producers: {
      initProducer: (request: Parameters<typeof issuing.producers.initProducer>[0]) => {
        registrations++;
        return issuing.producers.initProducer(request);
      },
    },
  };
  const sw = await connect(split);
  const deliveryTimeoutMs = 600;
  const producer = sw.producer({ idempotent: true, deliveryTimeoutMs, lingerMs: 0, retryBackoffMs: 20 });
  const started = Date.now();
  const error = await producer.send('t', { value: 'a' }).then(
    () => new Error('acknowledged by a broker that never issued the producer id'),
    (reason: unknown) => reason,
  );
  const elapsedMs = Date.now() - started;
  expect(error).toMatchObject({ code: 'UNKNOWN_PRODUCER_ID' });
  expect(elapsedMs).toBeGreaterThanOrEqual(deliveryTimeoutMs - 50);
  // Registered again after each UNKNOWN_PRODUCER_ID, with the retry backoff between (not thousands).
  expect(registrations).toBeGreaterThan(1);
  expect(registrations).toBeLessThan(50);
  // The loop ended: no more registrations once the send failed (nothing else waits to be sent).
  const after = registrations;
  await new Promise((resolve) => setTimeout(resolve, 200));
  expect(registrations).toBeLessThanOrEqual(after + 1);
  expect(writing.messages.listOffset('t', 0, 'latest')).toBe(0);
});
