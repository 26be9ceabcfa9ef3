/**
 * Child process of queue-processes.test.ts, run compiled:
 *   node dist/test/broker/queues/queue-consumer-child.js URL GROUP TOPIC MODE [ACK_LIMIT]
 * A queue consumer (WebSocket client) that, for each message, prints
 *   {"t":"p","p":partition,"o":offset,"k":key,"n":deliveryCount}   processed (before its ack is sent)
 * then acks it without waiting and prints, once the broker made the ack durable,
 *   {"t":"a","p":partition,"o":offset}
 * With ACK_LIMIT, it stops acking after that many messages (a member whose work hangs: what it
 * processed after that is what must come again when it dies).
 * stdout is a pipe (written synchronously on Linux): a printed line happened before any kill.
 * Every 20 messages it pauses 2 ms (work that takes time: the broker keeps handing out meanwhile, so a
 * kill finds messages processed and not yet acked). Ends on SIGTERM (closes the consumer and the client).
 */
import { Spillway } from '../../../src/client/index.js';

const [url, group, topic, mode, ackLimit] = process.argv.slice(2) as [
  string,
  string,
  string,
  'shared' | 'key_shared',
  string | undefined,
];
const acksMax = ackLimit === undefined ? Number.POSITIVE_INFINITY : Number(ackLimit);
const sw = await Spillway.connect(url);
const consumer = sw.consumer({ group, topics: [topic], mode, ackTimeoutMs: 10_000, maxMessages: 200 });
const print = (line: unknown): boolean => process.stdout.write(`${JSON.stringify(line)}\n`);
process.once('SIGTERM', () => void consumer.close());
print({ t: 'ready' });
let count = 0;
for await (const message of consumer) {
  if (++count % 20 === 0) await new Promise((resolve) => setTimeout(resolve, 2));
  const { partition: p, offset: o } = message;
  print({ t: 'p', p, o, k: message.key?.toString() ?? null, n: message.deliveryCount });
  if (count > acksMax) continue;
  message.ack().then(
    () => print({ t: 'a', p, o }),
    () => undefined,
  );
}
await sw.close();
