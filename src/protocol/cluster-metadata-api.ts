/**
 * METADATA (opcode 70, docs/PROTOCOL.md "Cluster metadata", docs/CLUSTER.md): which broker leads
 * which partition. Request header `{ topics: [name, ...] }` (1..metadataTopicsMax names); answer
 * `ClusterMetadata`. A single broker (no `--cluster`) answers `cluster: false` with empty lists: every
 * partition is on the broker the client is connected to. In a cluster the answer is the broker's
 * view from etcd (its last read: possibly one watch notification behind etcd), listing only the
 * named topics' partitions the controller has assigned.
 */
import { InvalidArgumentError } from '../errors.js';
import { metadataTopicsMax, topicNameLengthMax } from '../limits.js';
import { asFields } from './messages.js';

export interface MetadataBroker {
  brokerId: number;
  /** The URL the broker advertises (ws:// or wss://). */
  url: string;
}

export interface MetadataPartition {
  topic: string;
  partition: number;
  /** -1: no leader (no in-sync replica is alive). */
  leaderId: number;
  leaderEpoch: number;
  replicas: number[];
  isr: number[];
}

export interface ClusterMetadata {
  /** False for a single broker: the lists are empty and every partition is on this broker. */
  cluster: boolean;
  /** The answering broker's id; null for a single broker. */
  brokerId: number | null;
  /** The controller's broker id as this broker last saw it; null when none (or a single broker). */
  controllerId: number | null;
  /** Live brokers. */
  brokers: MetadataBroker[];
  /** The named topics' assigned partitions, by topic then partition. */
  partitions: MetadataPartition[];
}

export interface MetadataRequest {
  topics: string[];
}

export interface ClusterMetadataService {
  metadata(topics: readonly string[]): ClusterMetadata;
  /**
   * The broker's front end is closing (its port stops listening): a session lost from now on is not
   * opened again — the others' crash detectors may end it first (control/crash-detector.ts), and the
   * broker's close ends it anyway.
   */
  leaving?(): void;
}

/** The answer of a broker without a cluster. */
export const singleBrokerMetadata = (): ClusterMetadata => ({
  cluster: false,
  brokerId: null,
  controllerId: null,
  brokers: [],
  partitions: [],
});

export function parseMetadataRequest(header: unknown): MetadataRequest {
  const topics = asFields(header)['topics'];
  if (!Array.isArray(topics) || topics.length === 0 || topics.length > metadataTopicsMax) {
    throw new InvalidArgumentError(`topics must be a list of 1 to ${metadataTopicsMax} topic names`);
  }
  for (const topic of topics) {
    if (typeof topic !== 'string' || topic.length === 0 || topic.length > topicNameLengthMax) {
      throw new InvalidArgumentError(`topics must hold topic names, got ${JSON.stringify(topic)}`);
    }
  }
  return { topics: [...new Set(topics as string[])] };
}
