/**
 * Producer ids unique across a cluster (docs/CLUSTER.md, "Built: idempotent producers"): blocks of
 * `producerIdBlockSize` ids claimed from one etcd key by compare-and-swap, handed out from memory.
 *
 *   key `id-block` (in the namespace `/spillway-producers/<cluster>/`) = { version: 1, nextProducerId }
 *
 * A claim reads the key at revision r and writes `nextProducerId + producerIdBlockSize` only if the
 * key is unchanged (`mod_revision == r`; `create_revision == 0` when it does not exist yet): two
 * brokers claiming at once get different blocks, one of them after reading again. Kafka's brokers
 * did the same with the ZooKeeper znode `/latest_producer_id_block` before KIP-730.
 *
 * Contracts: an id is handed out at most once in the cluster, whatever fails (ids left in a block
 * when the broker stops are never used). Claims are serialized per broker (one in flight; callers
 * waiting meanwhile share it). Unreachable etcd or a key this version cannot read:
 * CLUSTER_UNAVAILABLE (retriable; the caller's registration fails and the client tries again).
 * Ids stay below 2^53 (safe integers; the batch header holds an int64): past that,
 * CLUSTER_UNAVAILABLE, not retriable.
 */
import type { Namespace } from 'etcd3';
import type { ProducerIdSource } from '../../broker/producers/producer-id-source.js';
import { ClusterUnavailableError } from '../../errors.js';
import { producerIdBlockSize } from '../../limits.js';
import { encodeRecord } from '../control/cluster-records.js';
import { etcdCall } from '../control/etcd-call.js';

export const producerIdBlockKey = 'id-block';

/** The etcd namespace of a cluster's producer ids: outside `/spillway/<cluster>/`, which every broker watches. */
export const producerIdNamespace = (clusterName: string): string => `/spillway-producers/${clusterName}/`;

/** Refused claims in a row before giving up (each refusal is another broker's claim succeeding). */
const claimAttemptsMax = 32;

/** The value of the key, or undefined when it cannot be read. */
export function decodeIdBlock(text: string): number | undefined {
  try {
    const value: unknown = JSON.parse(text);
    if (typeof value !== 'object' || value === null) return undefined;
    const next = (value as Record<string, unknown>)['nextProducerId'];
    return typeof next === 'number' && Number.isSafeInteger(next) && next >= 0 ? next : undefined;
  } catch {
    return undefined;
  }
}

export class ProducerIdBlocks implements ProducerIdSource {
  private next = 0;
  private end = 0;
  private claiming: Promise<void> | null = null;
  /** Blocks claimed by this broker (tests, metrics). */
  claims = 0;

  constructor(
    private readonly namespace: Namespace,
    private readonly blockSize = producerIdBlockSize,
  ) {}

  async nextProducerId(): Promise<number> {
    while (this.next >= this.end) {
      this.claiming ??= this.claim().finally(() => {
        this.claiming = null;
      });
      await this.claiming;
    }
    return this.next++;
  }

  private async claim(): Promise<void> {
    for (let attempt = 0; attempt < claimAttemptsMax; attempt++) {
      const response = await etcdCall('read the producer id block', () =>
        this.namespace.get(producerIdBlockKey).exec(),
      );
      const kv = response.kvs[0];
      let start = 0;
      if (kv !== undefined) {
        const decoded = decodeIdBlock(kv.value.toString('utf8'));
        if (decoded === undefined) {
          throw new ClusterUnavailableError(
            `the producer id block in etcd cannot be read: ${kv.value.toString('utf8').slice(0, 200)}`,
            { retriable: false },
          );
        }
        start = decoded;
      }
      const end = start + this.blockSize;
      if (!Number.isSafeInteger(end)) {
        throw new ClusterUnavailableError('producer ids are exhausted (2^53)', { retriable: false });
      }
      const put = this.namespace.put(producerIdBlockKey).value(encodeRecord({ nextProducerId: end }));
      const written = await etcdCall('claim a producer id block', () =>
        (kv === undefined
          ? this.namespace.if(producerIdBlockKey, 'Create', '==', 0)
          : this.namespace.if(producerIdBlockKey, 'Mod', '==', kv.mod_revision)
        )
          .then(put)
          .commit(),
      );
      if (written.succeeded) {
        this.next = start;
        this.end = end;
        this.claims++;
        return;
      }
    }
    throw new ClusterUnavailableError(
      `no producer id block claimed in ${claimAttemptsMax} attempts (the key keeps changing)`,
    );
  }
}
