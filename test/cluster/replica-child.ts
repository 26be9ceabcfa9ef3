/**
 * Child process of replica-kill.test.ts, run compiled (`node dist/test/cluster/replica-child.js DIR ID`):
 * one broker of a test cluster on loopback, driven by its parent over stdin/stdout JSON lines.
 * Prints `{"listening":URL}` once it serves. Reads commands:
 *   {"seq":N,"createTopic":NAME,"config":{...}}        creates the topic (if missing)
 *   {"seq":N,"assign":ASSIGNMENT,"endpoints":[[id,url],...]}  ReplicaManager.applyAssignment
 *   {"isrResult":N,"assignment":A|null}                 the answer to its changeIsr request N
 * and answers each command with {"done":N} or {"failed":N,"code":C,"message":M}. Its leader's ISR
 * changes go to the parent (the control plane stand-in) as {"changeIsr":N,"topic","partition","leaderEpoch","isr"}.
 */
import { createInterface } from 'node:readline';
import type { BrokerEndpoint, IsrChanger, PartitionAssignment } from '../../src/cluster/partition-role.js';
import { BrokerReplicaManager } from '../../src/cluster/replication/broker-replica-manager.js';
import { Broker } from '../../src/spillway-broker.js';

const [directory, idText] = process.argv.slice(2) as [string, string];
const brokerId = Number(idText);
const print = (line: unknown): boolean => process.stdout.write(`${JSON.stringify(line)}\n`);

const pendingIsr = new Map<number, (assignment: PartitionAssignment | null) => void>();
let nextIsr = 1;
const isrChanger: IsrChanger = {
  changeIsr(topic, partition, leaderEpoch, isr) {
    const id = nextIsr++;
    return new Promise((resolve) => {
      pendingIsr.set(id, resolve);
      print({ changeIsr: id, topic, partition, leaderEpoch, isr });
    });
  },
};

const broker = await Broker.open({ dataDir: directory, segmentBytes: 1024 * 1024 });
const server = await broker.listen({ host: '127.0.0.1', port: 0 });
const manager = BrokerReplicaManager.attach(broker, {
  brokerId,
  isrChanger,
  replicaLagTimeMs: 2_000,
  replicationTimeoutMs: 10_000,
  replicaFetchMaxWaitMs: 200,
  warn: (message) => process.stderr.write(`broker ${brokerId}: ${message}\n`),
});
print({ listening: server.url });

interface Command {
  seq?: number;
  createTopic?: string;
  config?: Record<string, unknown>;
  assign?: PartitionAssignment;
  endpoints?: Array<[number, string]>;
  isrResult?: number;
  assignment?: PartitionAssignment | null;
}

async function run(command: Command): Promise<void> {
  if (command.createTopic !== undefined) {
    if (!broker.topics.list().some((topic) => topic.name === command.createTopic)) {
      await broker.topics.create(command.createTopic, command.config ?? {});
    }
  } else if (command.assign !== undefined) {
    const endpoints = new Map<number, BrokerEndpoint>(
      (command.endpoints ?? []).map(([id, url]) => [id, { brokerId: id, url }]),
    );
    await manager.applyAssignment(command.assign, endpoints);
  }
}

for await (const text of createInterface({ input: process.stdin })) {
  const command = JSON.parse(text) as Command;
  if (command.isrResult !== undefined) {
    pendingIsr.get(command.isrResult)?.(command.assignment ?? null);
    pendingIsr.delete(command.isrResult);
    continue;
  }
  const seq = command.seq!;
  run(command).then(
    () => print({ done: seq }),
    (error: { code?: string; message?: string }) =>
      print({ failed: seq, code: error.code ?? 'INTERNAL', message: error.message ?? String(error) }),
  );
}
