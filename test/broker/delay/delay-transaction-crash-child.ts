/**
 * Child process of delay-transaction-crash.test.ts, run compiled
 * (`node dist/test/broker/delay/delay-transaction-crash-child.js DIR FIRST`) and killed with SIGKILL
 * at a random moment. Opens a Broker on DIR (topic `d`: 3 partitions, `interval`; `__delay` in 64 KiB
 * segments), waits until no delayed message is pending (what a crash left due fires at open), reads
 * every partition of `d` and prints
 *   {"opened":{"messages":[[value, originalDeliverAt, firedAtMs], ...]}}
 * then runs transactions n = FIRST, FIRST+1, ... from 8 concurrent loops: transaction n sends
 * `n/p` (plain), `n/r/D` (delayMs D = 100 + 50 * (n % 5)) and `n/a/T` (deliverAt T = the send time
 * + 300) to partitions (n + i) % 3, then commits, except every fourth (n % 4 === 3), which it rolls
 * back. It prints
 *   {"deciding":n,"decision":"commit"|"rollback","atMs":Date.now()}   before TXN_END
 *   {"committed":n,"atMs":Date.now()} / {"rolledBack":n}                once acknowledged
 */
import { BatchAttributes, batchLengthAt } from '../../../src/format/batch-header.js';
import { decodeRecords, encodeBatch } from '../../../src/format/record-batch.js';
import {
  delayMsHeader,
  deliverAtHeader,
  originalDeliverAtHeader,
} from '../../../src/protocol/reserved-headers.js';
import { Broker } from '../../../src/spillway-broker.js';

const [directory, first] = process.argv.slice(2) as [string, string];
const broker = await Broker.open({
  dataDir: directory,
  segmentBytes: 256 * 1024,
  delaySegmentBytes: 64 * 1024,
  durability: 'interval',
});
broker.transactions.onLog = () => undefined;
const print = (line: unknown): boolean => process.stdout.write(`${JSON.stringify(line)}\n`);
if (!broker.topics.list().some((topic) => topic.name === 'd')) {
  await broker.topics.create('d', { partitions: 3 });
}

for (let waited = 0; broker.delay.stats().pending > 0 && waited < 20_000; waited += 10) {
  await new Promise((resolve) => setTimeout(resolve, 10));
}
const messages: Array<[string, number, number]> = [];
for (let partition = 0; partition < 3; partition++) {
  let offset = broker.messages.listOffset('d', partition, 'earliest');
  for (;;) {
    const result = await broker.messages.fetch('d', partition, offset, { maxBytes: 1 << 20, maxWaitMs: 0 });
    if (result.batchCount === 0) break;
    let position = 0;
    while (position < result.records.length) {
      const length = batchLengthAt(result.records, position);
      for (const record of decodeRecords(result.records.subarray(position, position + length))) {
        if (record.offset < offset) continue;
        const due = record.headers.find(([name]) => name === originalDeliverAtHeader)?.[1];
        messages.push([
          Buffer.from(record.value!).toString(),
          due == null ? -1 : Number(Buffer.from(due).toString()),
          record.timestamp,
        ]);
      }
      position += length;
    }
    offset = result.nextOffset;
  }
}
print({ opened: { messages, pending: broker.delay.stats().pending } });

const session = broker.sessions.open({ kind: 'in-process', transport: null });
let next = Number(first);
async function loop(): Promise<void> {
  for (;;) {
    const n = next++;
    const { id } = await broker.transactions.begin(session, { group: 'crash', checkAfterMs: 60_000 });
    const delayMs = 100 + 50 * (n % 5);
    const at = Date.now() + 300;
    const plain = encodeBatch([{ key: `${n}`, value: `${n}/p` }]);
    const relative = encodeBatch(
      [{ key: `${n}`, value: `${n}/r/${delayMs}`, headers: [[delayMsHeader, String(delayMs)]] }],
      { attributes: BatchAttributes.delayed },
    );
    const absolute = encodeBatch(
      [{ key: `${n}`, value: `${n}/a/${at}`, headers: [[deliverAtHeader, String(at)]] }],
      { attributes: BatchAttributes.delayed },
    );
    await Promise.all(
      [plain, relative, absolute].map((batch, i) =>
        broker.transactions.send(session, id, 'd', (n + i) % 3, batch),
      ),
    );
    const decision = n % 4 === 3 ? 'rollback' : 'commit';
    print({ deciding: n, decision, atMs: Date.now() });
    await broker.transactions.end(session, id, decision);
    print(decision === 'commit' ? { committed: n, atMs: Date.now() } : { rolledBack: n });
  }
}
await Promise.all(Array.from({ length: 8 }, () => loop()));
