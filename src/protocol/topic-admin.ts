/**
 * Which topic service answers the topic admin requests (CREATE_TOPIC, DELETE_TOPIC, ADD_PARTITIONS,
 * LIST_TOPICS, DESCRIBE_TOPIC and their HTTP routes): in a cluster the cluster's
 * (`BrokerApi.clusterTopics`: etcd, any broker may be asked), else the broker's own topics. The
 * replica placement (`replicationFactor`, `minInSyncReplicas`) means something only in a cluster; a
 * single broker accepts 1 for either (it is the topic's one replica) and refuses more with
 * INVALID_ARGUMENT.
 */
import { InvalidArgumentError } from '../errors.js';
import type { BrokerApi, CreateTopicOptions, TopicDescription, TopicService } from './broker-api.js';

/** The topic service of admin requests: the cluster's when there is one. */
export function adminTopics(api: BrokerApi): TopicService {
  return api.clusterTopics ?? api.topics;
}

/** CREATE_TOPIC: in the cluster with its placement, or on this single broker (placement 1 at most). */
export function createTopicThrough(
  api: BrokerApi,
  name: string,
  options: CreateTopicOptions,
): Promise<TopicDescription> {
  if (api.clusterTopics !== undefined) return api.clusterTopics.create(name, options);
  const { replicationFactor, minInSyncReplicas, ...config } = options;
  for (const [field, value] of [
    ['replicationFactor', replicationFactor],
    ['minInSyncReplicas', minInSyncReplicas],
  ] as const) {
    if (value !== undefined && value !== 1) {
      throw new InvalidArgumentError(
        `${field} ${value} needs a cluster: this broker runs alone (start brokers with --cluster)`,
      );
    }
  }
  return api.topics.create(name, config);
}
