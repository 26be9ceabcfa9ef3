/**
 * Child process of metadata-crash.test.ts, run compiled (`node dist/test/broker/metadata-crash-child.js DIR FIRST`)
 * and killed with SIGKILL at a random moment. Opens a Broker on DIR (small state-log segments and
 * frequent snapshots, so kills also land in snapshots and segment deletions), prints
 * `{"opened":{"topics":{name: partitionCount},"warnings":[...]}}`, then administers topics one after
 * another, printing each acknowledged operation:
 *   {"created":NAME,"partitions":N}   topic NAME = t<n> created with N = 1 + n % 3 partitions
 *   {"grown":NAME,"partitions":N}     one partition added to NAME (now N)
 *   {"deleting":NAME}                 about to delete NAME (a kill now may complete the deletion later)
 *   {"deleted":NAME}                  NAME deleted
 * Every third operation adds a partition to the newest topic, every fifth deletes the oldest.
 */
import { Broker } from '../../src/spillway-broker.js';

const [directory, first] = process.argv.slice(2) as [string, string];
const broker = await Broker.open({
  dataDir: directory,
  segmentBytes: 64 * 1024,
  stateLog: { segmentBytes: 64 * 1024, snapshotBytesMin: 1024 },
});
const topics = Object.fromEntries(broker.topics.list().map((topic) => [topic.name, topic.partitionCount]));
const print = (line: unknown): boolean => process.stdout.write(`${JSON.stringify(line)}\n`);
print({ opened: { topics, warnings: broker.openReport.warnings } });

for (let n = Number(first); ; n++) {
  const names = broker.topics.list().map((topic) => topic.name);
  if (n % 5 === 4 && names.length > 2) {
    const oldest = names.sort((a, b) => Number(a.slice(1)) - Number(b.slice(1)))[0]!;
    print({ deleting: oldest });
    await broker.topics.delete(oldest);
    print({ deleted: oldest });
  } else if (n % 3 === 2 && names.length > 0) {
    const newest = names.sort((a, b) => Number(b.slice(1)) - Number(a.slice(1)))[0]!;
    const grown = await broker.topics.addPartitions(newest, 1);
    print({ grown: newest, partitions: grown.partitionCount });
  } else {
    const created = await broker.topics.create(`t${n}`, { partitions: 1 + (n % 3) });
    print({ created: created.name, partitions: created.partitionCount });
  }
}
