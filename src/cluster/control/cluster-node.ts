/**
 * A broker's membership in a cluster: the composition of the control plane (docs/CLUSTER.md).
 *
 * `ClusterNode.start` connects to etcd, opens the broker's session (lease + registration; a broker id
 * held by a live broker fails the start with BROKER_ID_IN_USE, unreachable etcd with
 * CLUSTER_UNAVAILABLE), watches the cluster's namespace and runs two level-triggered loops on every
 * change: the controller role (campaign, then reconcile while elected) and the assignment watcher
 * (calls the data plane's ReplicaManager). When the session is lost the controller steps down at
 * once and a new session is opened (retried with backoff until it succeeds or the node closes).
 *
 * What the data plane gets: `isrChanger` (the leader's ISR changes, fenced by epoch and lease) and the
 * ReplicaManager calls. What the broker's admin path gets: `admin` (topic intents in etcd).
 * The ReplicaManager belongs to the caller: `close()` does not close it.
 */
import type { Etcd3, Namespace, Watcher } from 'etcd3';
import type { ClusterTopicChange } from '../../broker/broker-topics.js';
import { clusterRetryMsMax, clusterRetryMsMin, clusterSessionTimeoutMsDefault } from '../../limits.js';
import type { ClusterMetadata, ClusterMetadataService } from '../../protocol/cluster-metadata-api.js';
import type { BrokerEndpoint, IsrChanger, PartitionAssignment, ReplicaManager } from '../partition-role.js';
import { AssignmentWatcher, type TopicView } from './assignment-watcher.js';
import { BrokerSession } from './broker-session.js';
import { ClusterAdmin } from './cluster-admin.js';
import { type ClusterOptions, validateClusterOptions } from './cluster-options.js';
import { clusterNamespace, type TopicRecord } from './cluster-records.js';
import { ClusterController, type ControllerEvent } from './controller.js';
import { CrashDetector } from './crash-detector.js';
import { connectEtcd, etcdCall } from './etcd-call.js';
import { EtcdIsrChanger } from './etcd-isr-changer.js';
import { ReconcileLoop } from './reconcile-loop.js';

export interface ClusterNodeOptions extends ClusterOptions {
  /** The data plane, or a function building it with this node's IsrChanger. */
  replicaManager: ReplicaManager | ((isrChanger: IsrChanger) => ReplicaManager);
  /** Makes the local topic exist before its partitions are applied (assignment-watcher.ts). */
  prepareTopic?: (topic: string, record: TopicRecord) => Promise<void>;
  /**
   * Internal topics the controller creates when missing, one group per service (its topics placed
   * together, controller.ts). Default none.
   */
  internalTopics?: readonly (readonly string[])[];
  /** Hears which topic records grew, went or were created again (assignment-watcher.ts). */
  topicsChanged?: (changes: ClusterTopicChange[]) => void;
  /** One line per notable event (elected, partition changes, errors). Default: nothing. */
  log?: (line: string) => void;
  /** Wall clock for registration times. Default Date.now. */
  nowMs?: () => number;
}

export class ClusterNode implements ClusterMetadataService {
  readonly admin: ClusterAdmin;
  readonly isrChanger: IsrChanger;
  private session: BrokerSession | undefined;
  private previousLease: string | undefined;
  private watcher: Watcher | undefined;
  private closed = false;
  /** Set by leaving(): a lost session is not opened again. */
  private leavingSoon = false;
  private reopenTimer: NodeJS.Timeout | undefined;
  private reopening: Promise<void> | undefined;
  private readonly controller: ClusterController;
  private readonly controllerLoop: ReconcileLoop;
  private readonly assignments: AssignmentWatcher;
  private readonly assignmentLoop: ReconcileLoop;
  private readonly crashDetector: CrashDetector;
  private readonly ttlSeconds: number;
  private readonly log: (line: string) => void;
  private readonly nowMs: () => number;

  private constructor(
    private readonly client: Etcd3,
    private readonly namespace: Namespace,
    private readonly options: ClusterNodeOptions,
  ) {
    this.log = options.log ?? (() => {});
    this.nowMs = options.nowMs ?? Date.now;
    this.ttlSeconds = Math.max(
      1,
      Math.ceil((options.sessionTimeoutMs ?? clusterSessionTimeoutMsDefault) / 1000),
    );
    this.admin = new ClusterAdmin(namespace, this.nowMs);
    const lease = () => (this.session?.alive === true ? this.session.leaseId : undefined);
    this.isrChanger = new EtcdIsrChanger(namespace, options.brokerId, lease);
    this.controller = new ClusterController(
      namespace,
      options.brokerId,
      { lease },
      (event) => this.log(describeEvent(event)),
      {
        nowMs: this.nowMs,
        ...(options.internalTopics !== undefined ? { internalTopics: options.internalTopics } : {}),
        ...(options.internalReplicationFactor !== undefined
          ? { internalReplicationFactor: options.internalReplicationFactor }
          : {}),
      },
    );
    this.controllerLoop = new ReconcileLoop(
      () => this.controller.pass(),
      (error) => this.log(`controller: ${(error as Error).message}`),
    );
    const replicaManager =
      typeof options.replicaManager === 'function'
        ? options.replicaManager(this.isrChanger)
        : options.replicaManager;
    this.assignments = new AssignmentWatcher(
      namespace,
      options.brokerId,
      replicaManager,
      options.prepareTopic,
      options.topicsChanged,
    );
    this.crashDetector = new CrashDetector({
      brokerId: options.brokerId,
      revokeLease: async (lease) => {
        await etcdCall("revoke a crashed broker's session lease", () =>
          namespace.leaseClient.leaseRevoke({ ID: lease }),
        );
      },
      log: this.log,
    });
    this.assignmentLoop = new ReconcileLoop(
      async () => {
        const outcome = await this.assignments.pass();
        const { brokers, controllerId } = this.assignments.sessions();
        this.crashDetector.track(brokers, controllerId);
        return outcome;
      },
      (error) => this.log(`assignments: ${(error as Error).message}`),
    );
  }

  static async start(options: ClusterNodeOptions): Promise<ClusterNode> {
    validateClusterOptions(options);
    const client = connectEtcd(options.etcd);
    const node = new ClusterNode(
      client,
      client.namespace(clusterNamespace(options.name ?? 'default')),
      options,
    );
    try {
      await node.openSession();
      await node.watch();
    } catch (error) {
      await node.close();
      throw error;
    }
    node.triggerAll();
    return node;
  }

  /**
   * An etcd namespace at `prefix`, on this node's client: for keys outside the watched cluster prefix
   * (state-services/producer-id-blocks.ts).
   */
  etcdNamespace(prefix: string): Namespace {
    return this.client.namespace(prefix);
  }

  get brokerId(): number {
    return this.options.brokerId;
  }

  /** True while this broker believes it is the controller (its writes are fenced by etcd regardless). */
  get isController(): boolean {
    return this.controller.active;
  }

  get controllerEpoch(): number {
    return this.controller.controllerEpoch;
  }

  /** The lease of the current session (undefined between sessions). */
  get leaseId(): string | undefined {
    return this.session?.alive === true ? this.session.leaseId : undefined;
  }

  /** Assignments applied on this broker through the ReplicaManager, by `topic/partition`. */
  appliedAssignments(): Map<string, PartitionAssignment> {
    return this.assignments.appliedAssignments();
  }

  /** METADATA's answer (protocol/cluster-metadata-api.ts) from this broker's last view of etcd. */
  metadata(topics: readonly string[]): ClusterMetadata {
    return this.assignments.metadata(topics);
  }

  /** A topic as this broker last read it from etcd (cluster-topics.ts); undefined if absent. */
  topicView(topic: string): TopicView | undefined {
    return this.assignments.topicView(topic);
  }

  /** The cluster's topics as this broker last read them, sorted. */
  topicNames(): string[] {
    return this.assignments.topicNames();
  }

  /** Live brokers as of the last assignment pass. */
  get endpoints(): ReadonlyMap<number, BrokerEndpoint> {
    return this.assignments.endpoints;
  }

  /** Asks both loops for a fresh pass (they also run on every etcd change). */
  triggerAll(): void {
    this.controllerLoop.trigger();
    this.assignmentLoop.trigger();
  }

  private async openSession(): Promise<void> {
    const session = await BrokerSession.open(this.namespace, {
      brokerId: this.options.brokerId,
      url: this.options.advertise,
      ttlSeconds: this.ttlSeconds,
      nowMs: this.nowMs,
      ...(this.previousLease !== undefined ? { previousLease: this.previousLease } : {}),
      onLost: (error) => this.sessionLost(session, error),
    });
    if (this.closed) {
      await session.revoke();
      return;
    }
    this.session = session;
    this.previousLease = session.leaseId;
  }

  /** The broker's front end is closing: a session lost from now on is not opened again (close() follows). */
  leaving(): void {
    this.leavingSoon = true;
  }

  private sessionLost(session: BrokerSession | undefined, error: Error): void {
    if (this.closed || (session !== undefined && session !== this.session)) return;
    this.controller.stepDown();
    this.session = undefined;
    if (this.leavingSoon) {
      this.log(`session lost (${error.message}) while leaving: stepping down`);
      return;
    }
    this.log(`session lost (${error.message}): stepping down, registering again`);
    this.scheduleReopen(clusterRetryMsMin);
  }

  private scheduleReopen(delayMs: number): void {
    if (this.closed || this.reopenTimer !== undefined || this.reopening !== undefined) return;
    this.reopenTimer = setTimeout(() => {
      this.reopenTimer = undefined;
      this.reopening = this.openSession()
        .then(() => {
          this.reopening = undefined;
          this.log(`registered again with lease ${this.leaseId ?? '(closed)'}`);
          this.triggerAll();
        })
        .catch((error: unknown) => {
          this.reopening = undefined;
          this.log(`cannot register again: ${(error as Error).message}`);
          this.scheduleReopen(Math.min(clusterRetryMsMax, delayMs * 2));
        });
    }, delayMs);
    this.reopenTimer.unref();
  }

  private async watch(): Promise<void> {
    const watcher = await etcdCall('watch the cluster', () => this.namespace.watch().prefix('').create());
    this.watcher = watcher;
    watcher.on('put', () => this.triggerAll());
    watcher.on('delete', () => this.triggerAll());
    // After a reconnect, events may have been compacted away: a full pass makes up for anything missed.
    watcher.on('connected', () => this.triggerAll());
    watcher.on('error', (error) => this.log(`watch: ${error.message}`));
  }

  /** Resolves once neither loop has a pass running or pending (for tests and orderly shutdown). */
  async settle(): Promise<void> {
    await Promise.all([this.controllerLoop.idle(), this.assignmentLoop.idle()]);
  }

  /**
   * Leaves the cluster: stops both loops and the watch, then revokes the session so the registration
   * (and the controller key, if held) go at once rather than after the session timeout.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.reopenTimer !== undefined) clearTimeout(this.reopenTimer);
    await this.reopening?.catch(() => {});
    await Promise.all([this.controllerLoop.close(), this.assignmentLoop.close()]);
    this.crashDetector.close();
    this.controller.stepDown();
    await this.watcher?.cancel().catch(() => {});
    await this.session?.revoke();
    this.session = undefined;
    this.client.close();
  }
}

function describeEvent(event: ControllerEvent): string {
  switch (event.kind) {
    case 'elected':
      return `controller: elected, controller epoch ${event.controllerEpoch}`;
    case 'deposed':
      return `controller: no longer controller (epoch ${event.controllerEpoch})`;
    case 'partition': {
      const { topic, partition, record } = event;
      return `controller: ${event.created ? 'created' : 'changed'} ${topic}/${partition}: leader ${record.leaderId} epoch ${record.leaderEpoch} isr [${record.isr.join(', ')}] replicas [${record.replicas.join(', ')}]`;
    }
    case 'internal-topic':
      return `controller: created internal topic ${event.topic}: replicationFactor ${event.record.replicationFactor}, minInSyncReplicas ${event.record.minInSyncReplicas}`;
    case 'unassignable':
      return `controller: cannot place ${event.topic}/${event.partition}: replicationFactor ${event.replicationFactor} > ${event.liveBrokers} live brokers (waiting for brokers)`;
    case 'invalid-keys':
      return `controller: ignoring etcd keys this version cannot read: ${event.keys.join(', ')}`;
  }
}
