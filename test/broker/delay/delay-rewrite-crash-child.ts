/**
 * Child process of delay-rewrite-crash.test.ts, run compiled
 * (`node dist/test/broker/delay/delay-rewrite-crash-child.js DIR ROUND KILL_AT`). Opens a Broker on
 * DIR (topic `s`, 1 partition; `__delay` in 64 KiB segments), waits until only the far messages are
 * pending, reads `s` and prints
 *   {"opened":{"values":[...short values in s],"far":pending,"report":openReport.delay,"delayLogBytes":n}}
 * In round 0 it schedules 40 messages a year ahead, one between each of its first 40 batches of short
 * delays. Then it produces batches of 20 short delays (50 to 150 ms, 300 bytes) every 20 ms, printing
 *   {"acked":[first, last]} per batch (values `ROUND/step/i`) and {"bytes":delayLogBytes} each 50
 * With KILL_AT `copied` or `marked` it kills itself with SIGKILL at that step of the first forward
 * rewrite pass after its far messages are in (copies durable but not marked; marked but not yet
 * redirected and deleted); with
 * `random` the test kills it.
 */
import { BatchAttributes, batchLengthAt } from '../../../src/format/batch-header.js';
import { decodeRecords, encodeBatch } from '../../../src/format/record-batch.js';
import { deliverAtHeader } from '../../../src/protocol/reserved-headers.js';
import { Broker } from '../../../src/spillway-broker.js';

const [directory, roundText, killAt] = process.argv.slice(2) as [string, string, string];
const round = Number(roundText);
const farCount = 40;
const broker = await Broker.open({
  dataDir: directory,
  delaySegmentBytes: 64 * 1024,
  durability: 'interval',
});
const print = (line: unknown): boolean => process.stdout.write(`${JSON.stringify(line)}\n`);
if (!broker.topics.list().some((topic) => topic.name === 's'))
  await broker.topics.create('s', { partitions: 1 });
const report = broker.openReport.delay;
const far = () => broker.delay.stats().later;
for (let waited = 0; broker.delay.stats().pending > far() && waited < 20_000; waited += 10) {
  await new Promise((resolve) => setTimeout(resolve, 10));
}
const values: string[] = [];
let offset = 0;
for (;;) {
  const result = await broker.messages.fetch('s', 0, offset, { maxBytes: 1 << 20, maxWaitMs: 0 });
  if (result.batchCount === 0) break;
  let position = 0;
  while (position < result.records.length) {
    const length = batchLengthAt(result.records, position);
    for (const record of decodeRecords(result.records.subarray(position, position + length))) {
      if (record.offset >= offset) values.push(Buffer.from(record.value!).toString().split('|')[0]!);
    }
    position += length;
  }
  offset = result.nextOffset;
}
print({
  opened: {
    values,
    far: far(),
    pending: broker.delay.stats().pending,
    report,
    delayLogBytes: broker.delay.stats().delayLogBytes,
  },
});

// The kill at a rewrite step is armed once round 0 has all its far messages acknowledged: on a
// loaded machine the steps are slow and the first rewrite pass could come before the 40th.
const armKill = (): void => {
  if (killAt !== 'copied' && killAt !== 'marked') return;
  broker.delay.onRewriteStep = (step) => {
    if (step === killAt) process.kill(process.pid, 'SIGKILL');
  };
};
const padding = 'x'.repeat(300);
const delayed = (items: Array<[string, number]>) =>
  encodeBatch(
    items.map(([value, due]) => ({
      value: `${value}|${padding}`,
      headers: [[deliverAtHeader, String(due)]],
    })),
    { attributes: BatchAttributes.delayed },
  );
for (let step = 0; ; step++) {
  if (step === (round === 0 ? farCount : 0)) armKill();
  if (round === 0 && step < farCount) {
    await broker.messages.produce('s', 0, delayed([[`far/${step}`, Date.now() + 365 * 86_400_000 + step]]));
  }
  const items: Array<[string, number]> = [];
  for (let i = 0; i < 20; i++)
    items.push([`${round}/${step}/${i}`, Date.now() + 50 + ((step * 7 + i) % 100)]);
  await broker.messages.produce('s', 0, delayed(items));
  print({ acked: [items[0]![0], items[19]![0]] });
  if (step % 50 === 0)
    print({ bytes: broker.delay.stats().delayLogBytes, rewrite: broker.delay.rewriteStats });
  await new Promise((resolve) => setTimeout(resolve, 20));
}
