/**
 * Child process of transaction-crash.test.ts, run compiled
 * (`node dist/test/broker/transactions/transaction-crash-child.js DIR FIRST`) and killed with SIGKILL
 * at a random moment. Opens a Broker on DIR (topics `a`, 4 partitions, `interval`, and `b`, 2
 * partitions, `always`), reads every partition of both and prints what a consumer sees:
 *   {"opened":{"counts":{"<n>":visibleMessagesOfTransactionN},"duplicates":[values seen twice]}}
 * then runs transactions n = FIRST, FIRST+1, ... from 16 concurrent loops: transaction n sends
 * 1 + n % 6 messages `n/i` (message i to topic a or b by i % 2, partition (n + i) % count), then
 * commits, except every fourth (n % 4 === 3), which it rolls back. It prints
 *   {"deciding":n,"decision":"commit"|"rollback"}   before TXN_END
 *   {"committed":n} / {"rolledBack":n}                 once acknowledged
 */
import { batchLengthAt } from '../../../src/format/batch-header.js';
import { decodeRecords, encodeBatch } from '../../../src/format/record-batch.js';
import { Broker } from '../../../src/spillway-broker.js';

const [directory, first] = process.argv.slice(2) as [string, string];
const broker = await Broker.open({ dataDir: directory, segmentBytes: 256 * 1024, durability: 'interval' });
broker.transactions.onLog = () => undefined;
const print = (line: unknown): boolean => process.stdout.write(`${JSON.stringify(line)}\n`);
const partitionCounts = { a: 4, b: 2 } as const;
for (const [name, partitions] of Object.entries(partitionCounts)) {
  if (!broker.topics.list().some((topic) => topic.name === name)) {
    await broker.topics.create(name, { partitions, durability: name === 'b' ? 'always' : 'interval' });
  }
}

const counts: Record<string, number> = {};
const seen = new Set<string>();
const duplicates: string[] = [];
for (const name of Object.keys(partitionCounts)) {
  const { partitionCount } = broker.topics.describe(name);
  for (let partition = 0; partition < partitionCount; partition++) {
    let offset = broker.messages.listOffset(name, partition, 'earliest');
    for (;;) {
      const result = await broker.messages.fetch(name, partition, offset, {
        maxBytes: 1 << 20,
        maxWaitMs: 0,
      });
      if (result.batchCount === 0) break;
      let position = 0;
      while (position < result.records.length) {
        const length = batchLengthAt(result.records, position);
        for (const record of decodeRecords(result.records.subarray(position, position + length))) {
          if (record.offset < offset) continue;
          const value = Buffer.from(record.value!).toString();
          if (seen.has(value)) duplicates.push(value);
          seen.add(value);
          const n = value.split('/')[0]!;
          counts[n] = (counts[n] ?? 0) + 1;
        }
        position += length;
      }
      offset = result.nextOffset;
    }
  }
}
print({ opened: { counts, duplicates } });

const session = broker.sessions.open({ kind: 'in-process', transport: null });
let next = Number(first);
async function loop(): Promise<void> {
  for (;;) {
    const n = next++;
    const { id } = await broker.transactions.begin(session, { group: 'crash', checkAfterMs: 60_000 });
    const sends = [];
    for (let i = 0; i < 1 + (n % 6); i++) {
      const topic = i % 2 === 0 ? 'a' : 'b';
      const partition = (n + i) % partitionCounts[topic];
      sends.push(
        broker.transactions.send(
          session,
          id,
          topic,
          partition,
          encodeBatch([{ key: `${n}`, value: `${n}/${i}` }]),
        ),
      );
    }
    await Promise.all(sends);
    const decision = n % 4 === 3 ? 'rollback' : 'commit';
    print({ deciding: n, decision });
    await broker.transactions.end(session, id, decision);
    print(decision === 'commit' ? { committed: n } : { rolledBack: n });
  }
}
await Promise.all(Array.from({ length: 16 }, () => loop()));
