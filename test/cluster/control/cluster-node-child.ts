/**
 * Child process of cluster-process.test.ts, run compiled
 * (`node dist/test/cluster/control/cluster-node-child.js ETCD_URL CLUSTER_NAME BROKER_ID`): one
 * ClusterNode (session timeout 1 s) whose ReplicaManager prints every call, one JSON line each:
 *   {"started":{"brokerId":N,"lease":"..."}}
 *   {"apply":{topic,partition,replicas,leaderId,leaderEpoch,isr,minInSyncReplicas}}
 *   {"remove":{"topic","partition"}}
 *   {"log":"..."}                 the node's own log lines (elected, session lost, ...)
 * It runs until killed (the test sends SIGKILL, SIGSTOP/SIGCONT) or SIGTERM (leaves the cluster).
 */
import { ClusterNode } from '../../../src/cluster/control/cluster-node.js';

const [etcd, name, brokerIdText] = process.argv.slice(2) as [string, string, string];
const brokerId = Number(brokerIdText);
const print = (line: unknown): boolean => process.stdout.write(`${JSON.stringify(line)}\n`);
const node = await ClusterNode.start({
  etcd,
  name,
  brokerId,
  advertise: `ws://127.0.0.1:${7300 + brokerId}`,
  sessionTimeoutMs: 1000,
  log: (line) => print({ log: line }),
  replicaManager: {
    applyAssignment: async (assignment) => void print({ apply: assignment }),
    removePartition: async (topic, partition) => void print({ remove: { topic, partition } }),
    close: async () => {},
  },
});
print({ started: { brokerId, lease: node.leaseId } });
process.once('SIGTERM', () => {
  void node.close().then(() => process.exit(0));
});
