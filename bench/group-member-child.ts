/**
 * A group member for the 'groups' bench suite: joins GROUP on TOPIC at URL, acks every message and
 * prints `<partition> <wall ms>` for each (the suite produces a few thousand a second), and `ready`
 * once joined. Killed by the suite (SIGKILL) or stopped (SIGTERM: close and exit).
 *
 *   node dist/bench/group-member-child.js URL GROUP TOPIC
 */
import { writeSync } from 'node:fs';
import { Spillway } from '../src/client/index.js';

const [url, group, topic] = process.argv.slice(2) as [string, string, string];
const sw = await Spillway.connect(url);
const consumer = sw.consumer({
  group,
  topics: [topic],
  from: 'latest',
  commitIntervalMs: 50,
  maxWaitMs: 100,
});
process.once('SIGTERM', () => {
  void consumer.close().then(async () => {
    await sw.close();
    process.exit(0);
  });
});
await consumer.ready();
writeSync(1, 'ready\n');
for await (const message of consumer) {
  writeSync(1, `${message.partition} ${Date.now()}\n`);
  await message.ack();
}
