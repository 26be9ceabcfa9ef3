/**
 * The cluster controller role of one broker (docs/CLUSTER.md, "Controller election and fencing",
 * "What the controller does"). Every broker runs one; at most one of them holds the `controller` key
 * at a time.
 *
 * `pass()` is one level-triggered reconcile, run by a ReconcileLoop on every change under the
 * namespace: it reads a snapshot; if nobody is controller it campaigns (a transaction creating the
 * `controller` key under this broker's lease and bumping `controller-epoch`); if this broker is
 * controller (the key's create revision is its fence) it makes every partition what
 * partition-planner.ts says, each write through FencedWriter. If the key exists with another create
 * revision, this broker is not (or no longer) controller and does nothing more.
 *
 * `stepDown()` forgets the fence at once (the session's lease was lost). Calls are serialized by the
 * loop; not safe to call `pass()` concurrently.
 */
import type { Namespace } from 'etcd3';
import { replicationFactorDefaultMax } from '../../limits.js';
import {
  controllerEpochKey,
  controllerKey,
  encodeRecord,
  noLeader,
  type PartitionRecord,
  type TopicRecord,
} from './cluster-records.js';
import { type ClusterSnapshot, partitionId, readClusterSnapshot } from './cluster-snapshot.js';
import { etcdCall } from './etcd-call.js';
import { FencedWriter } from './fenced-writer.js';
import {
  assignReplicas,
  colocatedPartitionRecord,
  newPartitionRecord,
  planPartition,
} from './partition-planner.js';
import type { PassOutcome } from './reconcile-loop.js';

export interface ControllerSession {
  /** The lease id of the broker's current session, undefined between sessions. */
  lease(): string | undefined;
}

export interface ControllerOptions {
  /**
   * Internal topics the controller creates when missing, one partition each, grouped per service
   * (the broker passes state-services/replicated-state-topics.ts): the topics of one group are
   * placed together and prefer the leader of the group's first topic (partition-planner.ts,
   * co-location). Default none.
   */
  internalTopics?: readonly (readonly string[])[];
  /**
   * replicationFactor of the internal state topics the controller creates (replicated-state-topics.ts).
   * Default replicationFactorDefaultMax (3); their partition is assigned once that many brokers live.
   */
  internalReplicationFactor?: number;
  /** Wall clock for the internal topics' creation time. Default Date.now. */
  nowMs?: () => number;
}

export type ControllerEvent =
  | { kind: 'elected'; controllerEpoch: number; fence: string }
  | { kind: 'deposed'; controllerEpoch: number }
  | { kind: 'partition'; topic: string; partition: number; record: PartitionRecord; created: boolean }
  | { kind: 'internal-topic'; topic: string; record: TopicRecord }
  | { kind: 'unassignable'; topic: string; partition: number; replicationFactor: number; liveBrokers: number }
  | { kind: 'invalid-keys'; keys: string[] };

export class ClusterController {
  private writer: FencedWriter | undefined;
  private epoch = 0;
  private reportedInvalid = '';
  /** Per unassignable partition, the live broker count it was reported with (bounded by the partitions). */
  private reportedUnassignable = new Map<string, number>();

  constructor(
    private readonly namespace: Namespace,
    private readonly brokerId: number,
    private readonly session: ControllerSession,
    private readonly onEvent: (event: ControllerEvent) => void = () => {},
    private readonly options: ControllerOptions = {},
  ) {}

  /** True while this broker believes it is controller (etcd may already have deposed it: writes are fenced). */
  get active(): boolean {
    return this.writer !== undefined;
  }

  get controllerEpoch(): number {
    return this.epoch;
  }

  /** The fence (create revision of the controller key) while active. */
  get fence(): string | undefined {
    return this.writer?.fence;
  }

  stepDown(): void {
    if (this.writer === undefined) return;
    this.writer = undefined;
    this.onEvent({ kind: 'deposed', controllerEpoch: this.epoch });
  }

  async pass(): Promise<PassOutcome> {
    const snapshot = await readClusterSnapshot(this.namespace);
    this.reportInvalid(snapshot);
    const controller = snapshot.controller;
    if (controller === undefined) {
      this.stepDown();
      return (await this.campaign(snapshot)) ? 'again' : 'done';
    }
    if (this.writer === undefined || controller.createRevision !== this.writer.fence) {
      this.stepDown();
      return 'done';
    }
    return this.reconcile(snapshot, this.writer);
  }

  /** Creates the controller key under this broker's lease if still absent; true if elected. */
  private async campaign(snapshot: ClusterSnapshot): Promise<boolean> {
    const lease = this.session.lease();
    if (lease === undefined || snapshot.brokers.get(this.brokerId)?.lease !== lease) return false; // not registered (yet)
    const previous = snapshot.controllerEpoch;
    const controllerEpoch = (previous?.record.controllerEpoch ?? 0) + 1;
    const response = await etcdCall('campaign for controller', () => {
      const transaction = this.namespace.if(controllerKey, 'Create', '==', 0);
      if (previous === undefined) transaction.and(controllerEpochKey, 'Create', '==', 0);
      else transaction.and(controllerEpochKey, 'Mod', '==', previous.modRevision);
      return transaction
        .then(
          this.namespace
            .put(controllerKey)
            .value(encodeRecord({ brokerId: this.brokerId, controllerEpoch }))
            .lease(lease),
          this.namespace.put(controllerEpochKey).value(encodeRecord({ controllerEpoch })),
        )
        .commit();
    });
    if (!response.succeeded) return false;
    // Both puts happened in this transaction: the controller key's create revision is its revision.
    const fence = response.header.revision;
    this.writer = new FencedWriter(this.namespace, fence);
    this.epoch = controllerEpoch;
    this.reportedUnassignable.clear();
    this.onEvent({ kind: 'elected', controllerEpoch, fence });
    return true;
  }

  private async reconcile(snapshot: ClusterSnapshot, writer: FencedWriter): Promise<PassOutcome> {
    const live = new Set(snapshot.brokers.keys());
    let refused = false;
    const groups = this.options.internalTopics ?? [];
    /** Co-located topic -> its group's anchor (first topic). */
    const anchorOf = new Map<string, string>();
    for (const group of groups) for (const topic of group.slice(1)) anchorOf.set(topic, group[0] as string);
    const anchorNames = new Set(groups.map((group) => group[0] as string));
    /** Partition 0 records of the anchors as this pass leaves them (created or changed here). */
    const anchors = new Map<string, PartitionRecord>();
    const anchorRecord = (topic: string): PartitionRecord | undefined =>
      anchors.get(topic) ?? snapshot.partitions.get(partitionId(topic, 0))?.record;
    // The internal state topics whose services follow leadership: created once, like any topic.
    for (const topic of groups.flat()) {
      if (snapshot.topics.has(topic)) continue;
      const replicationFactor = this.options.internalReplicationFactor ?? replicationFactorDefaultMax;
      const record: TopicRecord = {
        partitions: 1,
        replicationFactor,
        minInSyncReplicas: Math.min(2, replicationFactor),
        createdAtMs: (this.options.nowMs ?? Date.now)(),
        config: {},
      };
      if (await writer.createTopic(topic, record)) this.onEvent({ kind: 'internal-topic', topic, record });
      refused = true; // either way: a fresh look creates its partition (or sees who did)
    }
    // New partitions of topics (and partitions added to them); anchors before their co-located topics.
    const topicsInOrder = [...snapshot.topics].sort(
      ([a], [b]) => Number(anchorOf.has(a)) - Number(anchorOf.has(b)),
    );
    for (const [topic, { record: topicRecord }] of topicsInOrder) {
      for (let partition = 0; partition < topicRecord.partitions; partition++) {
        if (snapshot.partitions.has(partitionId(topic, partition))) continue;
        const anchor = partition === 0 ? anchorOf.get(topic) : undefined;
        const anchorNow = anchor === undefined ? undefined : anchorRecord(anchor);
        let record: PartitionRecord | undefined;
        if (anchorNow !== undefined && anchorNow.replicas.length === topicRecord.replicationFactor) {
          record = colocatedPartitionRecord(anchorNow, live, this.epoch);
        } else {
          // The anchor's name places a group's topics alike even when created in one pass.
          const replicas = assignReplicas(anchor ?? topic, partition, topicRecord.replicationFactor, live);
          record = replicas === undefined ? undefined : newPartitionRecord(replicas, this.epoch);
        }
        if (record === undefined) {
          this.reportUnassignable(topic, partition, topicRecord.replicationFactor, live.size);
          continue;
        }
        this.reportedUnassignable.delete(partitionId(topic, partition));
        if (await writer.createPartition(topic, partition, record)) {
          if (partition === 0 && anchorNames.has(topic)) anchors.set(topic, record);
          this.onEvent({ kind: 'partition', topic, partition, record, created: true });
        } else {
          refused = true;
        }
      }
    }
    // Existing partitions: gone with their topic, or a leader / ISR to change (anchors first, so
    // their co-located topics prefer the leader this pass gives them).
    const partitionsInOrder = [...snapshot.partitions.values()].sort(
      (a, b) => Number(anchorOf.has(a.topic)) - Number(anchorOf.has(b.topic)),
    );
    for (const entry of partitionsInOrder) {
      const topicRecord = snapshot.topics.get(entry.topic)?.record;
      if (topicRecord === undefined || entry.partition >= topicRecord.partitions) {
        if (!(await writer.deletePartition(entry.topic, entry.partition, entry.modRevision))) refused = true;
        continue;
      }
      const anchor = entry.partition === 0 ? anchorOf.get(entry.topic) : undefined;
      const preferred = anchor === undefined ? noLeader : (anchorRecord(anchor)?.leaderId ?? noLeader);
      const next = planPartition(entry.record, live, this.epoch, preferred);
      if (next === undefined) continue;
      if (await writer.updatePartition(entry.topic, entry.partition, entry.modRevision, next)) {
        if (entry.partition === 0 && anchorNames.has(entry.topic)) {
          anchors.set(entry.topic, next);
        }
        this.onEvent({
          kind: 'partition',
          topic: entry.topic,
          partition: entry.partition,
          record: next,
          created: false,
        });
      } else {
        refused = true;
      }
    }
    return refused ? 'again' : 'done';
  }

  private reportInvalid(snapshot: ClusterSnapshot): void {
    const keys = snapshot.invalid.join('\n');
    if (keys !== this.reportedInvalid && snapshot.invalid.length > 0) {
      this.onEvent({ kind: 'invalid-keys', keys: [...snapshot.invalid] });
    }
    this.reportedInvalid = keys;
  }

  private reportUnassignable(
    topic: string,
    partition: number,
    replicationFactor: number,
    liveBrokers: number,
  ): void {
    const id = partitionId(topic, partition);
    if (this.reportedUnassignable.get(id) === liveBrokers) return;
    this.reportedUnassignable.set(id, liveBrokers);
    this.onEvent({ kind: 'unassignable', topic, partition, replicationFactor, liveBrokers });
  }
}
