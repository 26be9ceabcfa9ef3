/**
 * The controller's only way to write partition keys: every write is one etcd transaction that holds
 * only if (a) the `controller` key still has the create revision this controller got when it was
 * elected (its **fence**: the key is deleted with the controller's lease, and a later controller's key
 * has a later create revision), and (b) the partition key's mod revision is the one the decision was
 * based on (create revision 0: the key must not exist). A deposed controller, or a decision made on a
 * stale read, is refused by etcd itself; the method then resolves false and nothing was written
 * (docs/CLUSTER.md, "Controller election and fencing").
 */
import type { Namespace } from 'etcd3';
import {
  controllerKey,
  encodeRecord,
  type PartitionRecord,
  partitionKey,
  type TopicRecord,
  topicKey,
} from './cluster-records.js';
import { etcdCall } from './etcd-call.js';

export class FencedWriter {
  constructor(
    private readonly namespace: Namespace,
    /** The create revision of the `controller` key this controller created. */
    readonly fence: string,
  ) {}

  /** Creates the topic key (an internal topic's); false if it exists already or the fence no longer holds. */
  createTopic(topic: string, record: TopicRecord): Promise<boolean> {
    return this.createKey(topicKey(topic), encodeRecord(record));
  }

  /** Creates the partition key; false if it exists already or the fence no longer holds. */
  createPartition(topic: string, partition: number, record: PartitionRecord): Promise<boolean> {
    return this.createKey(partitionKey(topic, partition), encodeRecord(record));
  }

  /** Replaces the partition's record if its mod revision is still `modRevision` and the fence holds. */
  async updatePartition(
    topic: string,
    partition: number,
    modRevision: string,
    record: PartitionRecord,
  ): Promise<boolean> {
    const key = partitionKey(topic, partition);
    const response = await etcdCall(`update ${key}`, () =>
      this.namespace
        .if(controllerKey, 'Create', '==', this.fence)
        .and(key, 'Mod', '==', modRevision)
        .then(this.namespace.put(key).value(encodeRecord(record)))
        .commit(),
    );
    return response.succeeded;
  }

  /** Deletes the partition key (its topic is gone) if unchanged since `modRevision` and the fence holds. */
  async deletePartition(topic: string, partition: number, modRevision: string): Promise<boolean> {
    const key = partitionKey(topic, partition);
    const response = await etcdCall(`delete ${key}`, () =>
      this.namespace
        .if(controllerKey, 'Create', '==', this.fence)
        .and(key, 'Mod', '==', modRevision)
        .then(this.namespace.delete().key(key))
        .commit(),
    );
    return response.succeeded;
  }

  /** Puts `value` at `key` if the key does not exist and the fence holds. */
  private async createKey(key: string, value: ReturnType<typeof encodeRecord>): Promise<boolean> {
    const response = await etcdCall(`create ${key}`, () =>
      this.namespace
        .if(controllerKey, 'Create', '==', this.fence)
        .and(key, 'Create', '==', 0)
        .then(this.namespace.put(key).value(value))
        .commit(),
    );
    return response.succeeded;
  }
}
