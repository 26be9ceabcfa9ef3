/**
 * Where a broker in a cluster gets producer ids (docs/CLUSTER.md, "Built: idempotent producers"):
 * implemented by the cluster layer (src/cluster/state-services/producer-id-blocks.ts); the broker
 * layer knows only this interface. Every id it resolves is unique in the cluster; it rejects with a
 * typed error (CLUSTER_UNAVAILABLE when etcd cannot be reached: retriable).
 */
export interface ProducerIdSource {
  nextProducerId(): Promise<number>;
}
