/**
 * A group member as its own process, for the end-to-end group tests: joins GROUP on TOPIC at URL in
 * MODE, and for each message prints `{"k","v","p","o"}` (key, value, partition, offset) on stdout,
 * synchronously (a pipe), then acks it: a printed line was processed before any commit covering it.
 * Prints `{"ready":true,"member":...}` once it joined. SIGTERM closes the consumer (commit, leave)
 * and exits 0.
 *
 *   node group-member-child.js URL GROUP TOPIC MODE MEMBER_ID
 */
import { writeSync } from 'node:fs';
import { Spillway } from '../../../src/client/index.js';

const [url, group, topic, mode, memberId] = process.argv.slice(2) as [string, string, string, string, string];
const sw = await Spillway.connect(url, { clientId: memberId });
const consumer = sw.consumer({
  group,
  topics: [topic],
  mode: mode as 'group' | 'broadcast',
  memberId,
  from: 'earliest',
  commitIntervalMs: 20,
  sessionTimeoutMs: 3000,
});
process.once('SIGTERM', () => {
  void consumer.close().then(async () => {
    await sw.close();
    process.exit(0);
  });
});
await consumer.ready();
writeSync(1, `${JSON.stringify({ ready: true, member: consumer.member })}\n`);
for await (const message of consumer) {
  writeSync(
    1,
    `{"k":"${message.key?.toString()}","v":${message.value?.toString()},"p":${message.partition},"o":${message.offset}}\n`,
  );
  await message.ack();
}
