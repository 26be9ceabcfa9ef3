/**
 * Child process of the replication bench suite (`node dist/bench/replica-broker-child.js DIR ID`):
 * a broker on 127.0.0.1 (free port) with a BrokerReplicaManager whose IsrChanger accepts every change
 * (no control plane: nothing fails in a benchmark). Prints `{"listening":URL}`; then reads JSON
 * lines `{"seq":N,"assign":ASSIGNMENT,"endpoints":[[id,url],...]}` from stdin and answers
 * `{"done":N}` or `{"failed":N,"message":M}`. Without an assignment it is a plain single broker.
 */
import { createInterface } from 'node:readline';
import type { BrokerEndpoint, PartitionAssignment } from '../src/cluster/partition-role.js';
import { BrokerReplicaManager } from '../src/cluster/replication/broker-replica-manager.js';
import { MemoryIsrChanger } from '../src/cluster/replication/memory-isr-changer.js';
import { Broker } from '../src/spillway-broker.js';

// SIGTERM ends the process through exit(), so a `--cpu-prof` run writes its profile.
process.once('SIGTERM', () => process.exit(0));
const [directory, idText] = process.argv.slice(2) as [string, string];
const print = (line: unknown): boolean => process.stdout.write(`${JSON.stringify(line)}\n`);
const broker = await Broker.open({ dataDir: directory });
const server = await broker.listen({ host: '127.0.0.1', port: 0 });
const isrChanger = new MemoryIsrChanger();
let manager: BrokerReplicaManager | null = null;
print({ listening: server.url });

for await (const text of createInterface({ input: process.stdin })) {
  const command = JSON.parse(text) as {
    seq: number;
    assign: PartitionAssignment;
    endpoints: Array<[number, string]>;
  };
  manager ??= BrokerReplicaManager.attach(broker, { brokerId: Number(idText), isrChanger });
  isrChanger.set(command.assign);
  const endpoints = new Map<number, BrokerEndpoint>(
    command.endpoints.map(([id, url]) => [id, { brokerId: id, url }]),
  );
  manager.applyAssignment(command.assign, endpoints).then(
    () => print({ done: command.seq }),
    (error: Error) => print({ failed: command.seq, message: error.message }),
  );
}
