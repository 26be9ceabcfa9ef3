/**
 * How one broker learns its partitions (docs/CLUSTER.md, "How brokers learn their assignments").
 * `pass()` (run by a ReconcileLoop on every change under the namespace) reads a snapshot and, for
 * each partition whose replicas include this broker, calls the data plane's
 * `ReplicaManager.applyAssignment` when the assignment differs from the last one applied, or when the
 * advertised URL of one of its replicas changed; it calls `removePartition` for a partition applied
 * before that no longer lists this broker or no longer exists.
 *
 * Guarantees to the ReplicaManager: calls are made one at a time, in a pass's order; a partition is
 * never given an assignment older than one already applied (a lower leaderEpoch is skipped), except
 * for a new incarnation of its topic (deleted and created again, another record `createdAtMs`: the
 * earlier one's partitions are removed first, even when no pass saw the topic absent); a call
 * that throws is not recorded as applied and is made again at the next pass (the pass reports
 * 'again' after a failure through the thrown error, so the loop backs off). `endpoints` holds every
 * live broker (id → advertised URL); `minInSyncReplicas` is the topic's.
 */
import type { Namespace } from 'etcd3';
import type { ClusterTopicChange } from '../../broker/broker-topics.js';
import type { ClusterMetadata, MetadataPartition } from '../../protocol/cluster-metadata-api.js';
import type { BrokerEndpoint, PartitionAssignment, ReplicaManager } from '../partition-role.js';
import type { PartitionRecord, TopicRecord } from './cluster-records.js';
import { type ClusterSnapshot, partitionId, readClusterSnapshot } from './cluster-snapshot.js';
import type { WatchedBroker } from './crash-detector.js';
import type { PassOutcome } from './reconcile-loop.js';

/** A topic as the last snapshot has it (index of `partitions` = partition; undefined: not assigned yet). */
export interface TopicView {
  topic: string;
  record: TopicRecord;
  partitions: (PartitionRecord | undefined)[];
}

interface Applied {
  assignment: PartitionAssignment;
  /** The creation time of the topic record it was applied for (its incarnation). */
  topicCreatedAtMs: number;
  /** Advertised URLs of the replicas at the time (absent: not registered). */
  replicaUrls: string;
}

export class AssignmentWatcher {
  private readonly applied = new Map<string, Applied>();
  /** Topics prepared locally, with the mod revision of the topic record they were prepared for. */
  private readonly prepared = new Map<string, { modRevision: string }>();
  private endpointsView: ReadonlyMap<number, BrokerEndpoint> = new Map();
  private lastSnapshot: ClusterSnapshot | undefined;

  constructor(
    private readonly namespace: Namespace,
    private readonly brokerId: number,
    private readonly replicaManager: ReplicaManager,
    /**
     * Called before the first applyAssignment of a topic's partition and whenever the topic's record
     * changed (more partitions): makes the local topic exist with the record's partitions and config.
     * A throw counts like a failed applyAssignment (retried at a later pass).
     */
    private readonly prepareTopic: (topic: string, record: TopicRecord) => Promise<void> = async () => {},
    /** Hears which topic records grew, went or were created again since the previous pass. */
    private readonly topicsChanged: (changes: ClusterTopicChange[]) => void = () => {},
  ) {}

  /** The assignments applied on this broker, by `topic/partition` (copies). */
  appliedAssignments(): Map<string, PartitionAssignment> {
    return new Map([...this.applied].map(([id, { assignment }]) => [id, { ...assignment }]));
  }

  /** The live brokers as of the last pass. */
  get endpoints(): ReadonlyMap<number, BrokerEndpoint> {
    return this.endpointsView;
  }

  /** The registered brokers' sessions and the controller as of the last pass (crash-detector.ts). */
  sessions(): { brokers: WatchedBroker[]; controllerId: number | undefined } {
    const snapshot = this.lastSnapshot;
    if (snapshot === undefined) return { brokers: [], controllerId: undefined };
    const brokers = [...snapshot.brokers.values()].map(({ record, lease }) => ({
      brokerId: record.brokerId,
      url: record.url,
      lease,
    }));
    return { brokers, controllerId: snapshot.controller?.record.brokerId };
  }

  /**
   * METADATA's answer from the last snapshot read (protocol/cluster-metadata-api.ts): live brokers,
   * the controller, and the assigned partitions of `topics`.
   */
  metadata(topics: readonly string[]): ClusterMetadata {
    const snapshot = this.lastSnapshot;
    const partitions: MetadataPartition[] = [];
    if (snapshot !== undefined) {
      for (const topic of topics) {
        const topicRecord = snapshot.topics.get(topic)?.record;
        if (topicRecord === undefined) continue;
        for (let partition = 0; partition < topicRecord.partitions; partition++) {
          const record = snapshot.partitions.get(partitionId(topic, partition))?.record;
          if (record === undefined) continue;
          const { leaderId, leaderEpoch, replicas, isr } = record;
          partitions.push({
            topic,
            partition,
            leaderId,
            leaderEpoch,
            replicas: [...replicas],
            isr: [...isr],
          });
        }
      }
    }
    return {
      cluster: true,
      brokerId: this.brokerId,
      controllerId: snapshot?.controller?.record.brokerId ?? null,
      brokers: [...this.endpointsView.values()].map(({ brokerId, url }) => ({ brokerId, url })),
      partitions,
    };
  }

  /** The topic's record and its partitions' records in the last snapshot; undefined if absent there. */
  topicView(topic: string): TopicView | undefined {
    const snapshot = this.lastSnapshot;
    const record = snapshot?.topics.get(topic)?.record;
    if (snapshot === undefined || record === undefined) return undefined;
    const partitions: (PartitionRecord | undefined)[] = [];
    for (let partition = 0; partition < record.partitions; partition++) {
      partitions.push(snapshot.partitions.get(partitionId(topic, partition))?.record);
    }
    return { topic, record, partitions };
  }

  /** The topics of the last snapshot, sorted by name. */
  topicNames(): string[] {
    return [...(this.lastSnapshot?.topics.keys() ?? [])].sort();
  }

  async pass(): Promise<PassOutcome> {
    const snapshot = await readClusterSnapshot(this.namespace);
    const previous = this.lastSnapshot;
    this.lastSnapshot = snapshot;
    if (previous !== undefined) {
      const changes = topicChanges(previous, snapshot);
      if (changes.length > 0) this.topicsChanged(changes);
    }
    const endpoints = new Map<number, BrokerEndpoint>();
    for (const [brokerId, { record }] of snapshot.brokers)
      endpoints.set(brokerId, { brokerId, url: record.url });
    this.endpointsView = endpoints;
    let failure: unknown;
    // A topic deleted and created again between two passes: what was applied for the earlier
    // incarnation is removed first, as if a pass had seen the deletion (the new one starts afresh).
    for (const [id, { assignment, topicCreatedAtMs }] of this.applied) {
      const current = snapshot.topics.get(assignment.topic)?.record;
      if (current === undefined || current.createdAtMs === topicCreatedAtMs) continue;
      try {
        await this.replicaManager.removePartition(assignment.topic, assignment.partition);
        this.applied.delete(id);
        this.prepared.delete(assignment.topic);
      } catch (error) {
        failure ??= error;
      }
    }
    const wanted = new Set<string>();
    for (const [id, entry] of snapshot.partitions) {
      const { record } = entry;
      if (!record.replicas.includes(this.brokerId)) continue;
      const topicRecord = snapshot.topics.get(entry.topic)?.record;
      if (topicRecord === undefined) continue; // being deleted: the controller deletes the partition next
      wanted.add(id);
      const assignment: PartitionAssignment = {
        topic: entry.topic,
        partition: entry.partition,
        replicas: [...record.replicas],
        leaderId: record.leaderId,
        leaderEpoch: record.leaderEpoch,
        isr: [...record.isr],
        minInSyncReplicas: topicRecord.minInSyncReplicas,
      };
      const replicaUrls = record.replicas.map((replica) => endpoints.get(replica)?.url ?? '').join(' ');
      const previous = this.applied.get(id);
      if (previous !== undefined && previous.topicCreatedAtMs !== topicRecord.createdAtMs) {
        continue; // its earlier incarnation could not be removed above: the next pass tries again
      }
      if (previous !== undefined) {
        if (assignment.leaderEpoch < previous.assignment.leaderEpoch) continue; // never go back
        if (sameAssignment(previous.assignment, assignment) && previous.replicaUrls === replicaUrls) continue;
      }
      try {
        const prepared = this.prepared.get(entry.topic);
        if (
          prepared === undefined ||
          prepared.modRevision !== snapshot.topics.get(entry.topic)?.modRevision
        ) {
          await this.prepareTopic(entry.topic, topicRecord);
          this.prepared.set(entry.topic, {
            modRevision: snapshot.topics.get(entry.topic)?.modRevision ?? '',
          });
        }
        await this.replicaManager.applyAssignment(assignment, endpoints);
        this.applied.set(id, { assignment, replicaUrls, topicCreatedAtMs: topicRecord.createdAtMs });
      } catch (error) {
        failure ??= error;
      }
    }
    for (const [id, { assignment }] of this.applied) {
      if (wanted.has(id)) continue;
      try {
        await this.replicaManager.removePartition(assignment.topic, assignment.partition);
        this.applied.delete(id);
      } catch (error) {
        failure ??= error;
      }
    }
    for (const topic of this.prepared.keys()) if (!snapshot.topics.has(topic)) this.prepared.delete(topic);
    if (failure !== undefined) throw failure;
    return 'done';
  }
}

function sameAssignment(a: PartitionAssignment, b: PartitionAssignment): boolean {
  return (
    a.minInSyncReplicas === b.minInSyncReplicas &&
    a.leaderId === b.leaderId &&
    a.leaderEpoch === b.leaderEpoch &&
    a.replicas.join(',') === b.replicas.join(',') &&
    a.isr.join(',') === b.isr.join(',')
  );
}

/** Topic records that grew, went, or were created again (another `createdAtMs`) from `before` to `after`. */
function topicChanges(before: ClusterSnapshot, after: ClusterSnapshot): ClusterTopicChange[] {
  const changes: ClusterTopicChange[] = [];
  for (const [topic, { record }] of before.topics) {
    const now = after.topics.get(topic)?.record;
    if (now === undefined) changes.push({ topic, kind: 'deleted' });
    else if (now.createdAtMs !== record.createdAtMs) changes.push({ topic, kind: 'recreated' });
    else if (now.partitions > record.partitions) changes.push({ topic, kind: 'grown' });
  }
  return changes;
}
