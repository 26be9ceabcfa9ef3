/**
 * Child process of queue-processes.test.ts, run compiled:
 *   node dist/test/broker/queues/queue-consumer-child.js URL GROUP TOPIC MODE
 * A queue consumer (WebSocket client) that, for each message, prints
 *   {"t":"p","p":partition,"o":offset,"k":key,"n":deliveryCount}   processed (before its ack is sent)
 * then acks it without waiting and prints, once the broker made the ack durable,
 *   {"t":"a","p":partition,"o":offset}
 * stdout is a pipe (written synchronously on Linux): a printed line happened before any kill.
 * Ends on SIGTERM (closes the consumer and the client).
 */
import { Spillway } from '../../../src/client/index.js';

const [url, group, topic, mode] = process.argv.slice(2) as [string, string, string, 'shared' | 'key_shared'];
const sw = await Spillway.connect(url);
const consumer = sw.consumer({ group, topics: [topic], mode, ackTimeoutMs: 10_000, maxMessages: 200 });
const print = (line: unknown): boolean => process.stdout.write(`${JSON.stringify(line)}\n`);
process.once('SIGTERM', () => void consumer.close());
print({ t: 'ready' });
for await (const message of consumer) {
  const { partition: p, offset: o } = message;
  print({ t: 'p', p, o, k: message.key?.toString() ?? null, n: message.deliveryCount });
  message.ack().then(
    () => print({ t: 'a', p, o }),
    () => undefined,
  );
}
await sw.close();
