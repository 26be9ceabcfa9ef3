/**
 * Topic administration of a broker in a cluster (docs/CLUSTER.md, "Topics"): the ClusterTopicService
 * that CREATE_TOPIC, ADD_PARTITIONS, DELETE_TOPIC, LIST_TOPICS and DESCRIBE_TOPIC (protocol and HTTP,
 * protocol/topic-admin.ts) use instead of the broker's own topics. Any broker may be asked.
 *
 * - create: the topic config is checked and resolved here with this broker's defaults (typed errors
 *   before etcd is touched), then ClusterAdmin writes the intent with `replicationFactor` and
 *   `minInSyncReplicas` (its checks: at most the live brokers, 1..replicationFactor). It answers once
 *   this broker's view of etcd shows every partition with a leader, or after `clusterTopicWaitMs`
 *   (then with what is there: partitions without a leader say `leaderId` -1).
 * - addPartitions / delete: through ClusterAdmin, answered once this broker's view shows the change
 *   (or after `clusterTopicWaitMs`). Deleting removes the topic from the cluster; the replicas' local
 *   data is not deleted (the data plane fences the partitions, docs/CLUSTER.md).
 * - describe / list: from this broker's last view of etcd (possibly a watch notification behind):
 *   placement, and per partition leader, epoch, replicas and ISR; the offsets and sizes are this
 *   broker's replica's (0 where it holds none). Internal topics (`__` names) that are not cluster
 *   topics are described from this broker's own.
 */
import { resolveTopicConfig } from '../../broker/topic-config.js';
import { validateUserTopicName } from '../../broker/topic-name.js';
import { SpillwayError, UnknownTopicError } from '../../errors.js';
import { clusterTopicWaitMs } from '../../limits.js';
import type {
  ClusterTopicService,
  CreateTopicOptions,
  ListTopicsOptions,
  PartitionDescription,
  TopicConfig,
  TopicDescription,
  TopicService,
} from '../../protocol/broker-api.js';
import type { TopicView } from './assignment-watcher.js';
import type { ClusterAdmin } from './cluster-admin.js';
import type { LocalTopicConfig } from './cluster-records.js';

/** What ClusterTopics needs of the cluster node. */
export interface ClusterTopicsNode {
  readonly admin: ClusterAdmin;
  topicView(topic: string): TopicView | undefined;
  topicNames(): string[];
  triggerAll(): void;
}

/** What ClusterTopics needs of the broker's own topics. */
export type LocalTopics = Pick<TopicService, 'describe' | 'list'> & {
  readonly topicDefaults: Required<TopicConfig>;
};

const isInternal = (name: string): boolean => name.startsWith('__');

export class ClusterTopics implements ClusterTopicService {
  constructor(
    private readonly node: ClusterTopicsNode,
    private readonly local: LocalTopics,
    private readonly waitMs: number = clusterTopicWaitMs,
  ) {}

  async create(name: string, options: CreateTopicOptions = {}): Promise<TopicDescription> {
    validateUserTopicName(name);
    const { replicationFactor, minInSyncReplicas, ...config } = options;
    const { partitions, ...resolved } = resolveTopicConfig(config, this.local.topicDefaults);
    await this.node.admin.createTopic(name, {
      partitions,
      ...(replicationFactor !== undefined ? { replicationFactor } : {}),
      ...(minInSyncReplicas !== undefined ? { minInSyncReplicas } : {}),
      config: resolved as LocalTopicConfig,
    });
    await this.waitForView(name, (view) => view !== undefined && allLed(view));
    return this.describe(name);
  }

  async addPartitions(name: string, count: number): Promise<TopicDescription> {
    const record = await this.node.admin.addPartitions(name, count);
    await this.waitForView(
      name,
      (view) => view !== undefined && view.record.partitions >= record.partitions && allLed(view),
    );
    return this.describe(name);
  }

  async delete(name: string): Promise<void> {
    validateUserTopicName(name);
    await this.node.admin.deleteTopic(name);
    await this.waitForView(name, (view) => view === undefined);
  }

  describe(name: string): TopicDescription {
    const view = this.node.topicView(name);
    if (view === undefined) {
      if (isInternal(name)) return this.local.describe(name);
      throw new UnknownTopicError(`no topic '${name}' in the cluster`);
    }
    return this.describeView(view);
  }

  list(options: ListTopicsOptions = {}): TopicDescription[] {
    const descriptions: TopicDescription[] = [];
    const names = new Set<string>();
    for (const name of this.node.topicNames()) {
      if (isInternal(name) && options.internal !== true) continue;
      const view = this.node.topicView(name);
      if (view === undefined) continue;
      names.add(name);
      descriptions.push(this.describeView(view));
    }
    if (options.internal === true) {
      for (const description of this.local.list({ internal: true })) {
        if (isInternal(description.name) && !names.has(description.name)) descriptions.push(description);
      }
    }
    return descriptions.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  private describeView(view: TopicView): TopicDescription {
    const { topic, record } = view;
    let local: TopicDescription | undefined;
    try {
      local = this.local.describe(topic);
    } catch (error) {
      if (!(error instanceof SpillwayError) || error.code !== 'UNKNOWN_TOPIC') throw error;
    }
    let config: Required<TopicConfig>;
    try {
      config = resolveTopicConfig(
        { ...record.config, partitions: record.partitions },
        this.local.topicDefaults,
      );
    } catch {
      config = { ...this.local.topicDefaults, partitions: record.partitions }; // written by another version
    }
    const partitions: PartitionDescription[] = view.partitions.map((state, partition) => {
      const replica = local?.partitions[partition];
      return {
        partition,
        logStartOffset: replica?.logStartOffset ?? 0,
        logEndOffset: replica?.logEndOffset ?? 0,
        durableOffset: replica?.durableOffset ?? 0,
        sizeBytes: replica?.sizeBytes ?? 0,
        segmentCount: replica?.segmentCount ?? 0,
        ...(replica?.damaged !== undefined ? { damaged: replica.damaged } : {}),
        leaderId: state?.leaderId ?? -1,
        leaderEpoch: state?.leaderEpoch ?? -1,
        replicas: [...(state?.replicas ?? [])],
        isr: [...(state?.isr ?? [])],
      };
    });
    return {
      name: topic,
      partitionCount: record.partitions,
      replicationFactor: record.replicationFactor,
      minInSyncReplicas: record.minInSyncReplicas,
      config,
      createdAtMs: record.createdAtMs,
      partitions,
    };
  }

  /** Waits until this broker's view of `name` satisfies `done`, at most waitMs (then returns anyway). */
  private async waitForView(name: string, done: (view: TopicView | undefined) => boolean): Promise<void> {
    this.node.triggerAll();
    const deadline = Date.now() + this.waitMs;
    while (!done(this.node.topicView(name)) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, viewPollMs));
    }
  }
}

/** How often waitForView looks at the view (it changes with every watch notification). */
const viewPollMs = 20;

function allLed(view: TopicView): boolean {
  return view.partitions.every((state) => state !== undefined && state.leaderId >= 0);
}
