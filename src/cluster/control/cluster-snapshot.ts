/**
 * One consistent view of a cluster's keys: every key under the namespace read by one etcd range
 * request, so brokers, controller, topics and partitions are all as of the same revision
 * (`revision`). Both the controller and every broker's assignment watcher decide from such a
 * snapshot, never from watch events alone (docs/CLUSTER.md, "level-triggered").
 *
 * Keys that this layout does not know, or whose value does not decode, are listed in `invalid`
 * and otherwise ignored. Revisions are etcd's (decimal strings, compared as given to etcd).
 */
import type { Namespace } from 'etcd3';
import { ClusterUnavailableError } from '../../errors.js';
import { clusterBrokersMax, clusterPartitionsMax } from '../../limits.js';
import {
  type BrokerRecord,
  type ControllerRecord,
  decodeBroker,
  decodeController,
  decodeControllerEpoch,
  decodePartition,
  decodeTopic,
  type PartitionRecord,
  parseKey,
  type TopicRecord,
} from './cluster-records.js';
import { etcdCall } from './etcd-call.js';

export interface Versioned<T> {
  record: T;
  createRevision: string;
  modRevision: string;
}

export interface BrokerEntry extends Versioned<BrokerRecord> {
  /** The lease the registration is attached to (decimal string). */
  lease: string;
}

export interface PartitionEntry extends Versioned<PartitionRecord> {
  topic: string;
  partition: number;
}

export interface ClusterSnapshot {
  revision: string;
  brokers: Map<number, BrokerEntry>;
  controller: Versioned<ControllerRecord> | undefined;
  controllerEpoch: Versioned<{ controllerEpoch: number }> | undefined;
  topics: Map<string, Versioned<TopicRecord>>;
  /** Keyed by `topic/partition`. */
  partitions: Map<string, PartitionEntry>;
  /** Keys (relative to the namespace) that are not of the layout or do not decode. */
  invalid: string[];
}

/** Keys one snapshot may hold: brokers, topics, partitions, the two controller keys. */
const snapshotKeysMax = clusterBrokersMax + 2 * clusterPartitionsMax + 2;

export const partitionId = (topic: string, partition: number): string => `${topic}/${partition}`;

export async function readClusterSnapshot(namespace: Namespace): Promise<ClusterSnapshot> {
  const response = await etcdCall('read the cluster state', () =>
    namespace.getAll().limit(snapshotKeysMax).exec(),
  );
  if (response.more) {
    throw new ClusterUnavailableError(
      `the cluster holds more than ${snapshotKeysMax} keys in etcd (clusterBrokersMax, clusterPartitionsMax)`,
      { retriable: false },
    );
  }
  const snapshot: ClusterSnapshot = {
    revision: response.header.revision,
    brokers: new Map(),
    controller: undefined,
    controllerEpoch: undefined,
    topics: new Map(),
    partitions: new Map(),
    invalid: [],
  };
  for (const kv of response.kvs) {
    const key = kv.key.toString('utf8');
    const text = kv.value.toString('utf8');
    const parsed = parseKey(key);
    const versions = { createRevision: kv.create_revision, modRevision: kv.mod_revision };
    let known = false;
    switch (parsed?.kind) {
      case 'broker': {
        const record = decodeBroker(text);
        if (record !== undefined && record.brokerId === parsed.brokerId) {
          snapshot.brokers.set(parsed.brokerId, { record, lease: kv.lease, ...versions });
          known = true;
        }
        break;
      }
      case 'controller': {
        const record = decodeController(text);
        if (record !== undefined) {
          snapshot.controller = { record, ...versions };
          known = true;
        }
        break;
      }
      case 'controller-epoch': {
        const record = decodeControllerEpoch(text);
        if (record !== undefined) {
          snapshot.controllerEpoch = { record, ...versions };
          known = true;
        }
        break;
      }
      case 'topic': {
        const record = decodeTopic(text);
        if (record !== undefined) {
          snapshot.topics.set(parsed.topic, { record, ...versions });
          known = true;
        }
        break;
      }
      case 'partition': {
        const record = decodePartition(text);
        if (record !== undefined) {
          snapshot.partitions.set(partitionId(parsed.topic, parsed.partition), {
            topic: parsed.topic,
            partition: parsed.partition,
            record,
            ...versions,
          });
          known = true;
        }
        break;
      }
      case undefined:
        break;
    }
    if (!known) snapshot.invalid.push(key);
  }
  return snapshot;
}
