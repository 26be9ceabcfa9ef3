/**
 * The composition root of an embedded broker: the engine (src/broker/broker-engine.ts) plus its
 * network front end (src/server/server.ts) and, with `BrokerOptions.cluster`, its cluster membership
 * (src/cluster/control/broker-cluster.ts). This is the `Broker` that `spillway` exports and that
 * `spillway broker` runs; the engine itself knows nothing of the network or the cluster.
 *
 * The server module is imported on first `listen()`, so an embedded broker that never listens does
 * not load uWebSockets.js; the cluster modules (and etcd3) are imported only with `cluster` set.
 */
import { BrokerEngine } from './broker/broker-engine.js';
import type { BrokerClusterOptions, BrokerOptions } from './broker/broker-options.js';
import type { BrokerCluster } from './cluster/control/broker-cluster.js';
import type { ClusterTopicService } from './protocol/broker-api.js';
import type { ClusterMetadataService } from './protocol/cluster-metadata-api.js';
import type { CoordinatorGate } from './protocol/coordinator-routing.js';
import type { ForwardingService } from './protocol/forwarding-api.js';
import type { BrokerServer, ServerOptions } from './server/server.js';

/** Options of `Broker.listen`: the server's (host, port, limits). */
export type ListenOptions = ServerOptions;

export class Broker extends BrokerEngine {
  /** The cluster membership when opened with `cluster`; undefined for a single broker. */
  cluster: BrokerCluster | undefined = undefined;
  private closing: Promise<void> | undefined;

  static override async open(options: BrokerOptions = {}): Promise<Broker> {
    let clusterOptions = options.cluster;
    if (clusterOptions === undefined) {
      return BrokerEngine.recovered(new Broker(await BrokerEngine.openParts(options)));
    }
    // Checked before the data directory is touched: a bad flag must not open (and lock) anything.
    const { BrokerCluster } = await import('./cluster/control/broker-cluster.js');
    if (clusterOptions.replicaManager === undefined) {
      // The data plane by default: partitions replicated by BrokerReplicaManager (src/cluster/replication/).
      const { BrokerReplicaManager } = await import('./cluster/replication/broker-replica-manager.js');
      const { brokerId, token } = clusterOptions;
      const clock = options.clock;
      clusterOptions = {
        ...clusterOptions,
        replicaManager: (engine, isrChanger) =>
          BrokerReplicaManager.attach(engine, {
            brokerId,
            isrChanger,
            ...(clock !== undefined ? { clock } : {}),
            ...(token !== undefined ? { token } : {}),
          }),
      };
    }
    BrokerCluster.validate(clusterOptions);
    // The engine cannot import the cluster layer: the replicated state logs are handed down.
    clusterOptions = { ...clusterOptions, replicatedStateLogs: BrokerCluster.replicatedStateLogs };
    const broker = await BrokerEngine.recovered(
      new Broker(await BrokerEngine.openParts({ ...options, cluster: clusterOptions })),
    );
    try {
      broker.cluster = await BrokerCluster.join(broker, clusterOptions as BrokerClusterOptions<Broker>);
    } catch (error) {
      await broker.close();
      throw error;
    }
    return broker;
  }

  /** Topic administration in a cluster (protocol/topic-admin.ts); undefined for a single broker. */
  get clusterTopics(): ClusterTopicService | undefined {
    return this.cluster?.topics;
  }

  /** METADATA's source in a cluster (protocol/cluster-metadata-api.ts); undefined for a single broker. */
  get clusterMetadata(): ClusterMetadataService | undefined {
    return this.cluster?.node;
  }

  /** FORWARD_PRODUCE / FORWARD_SCAN's receiver in a cluster (BrokerApi.forwarding); undefined alone. */
  get forwarding(): ForwardingService | undefined {
    return this.cluster?.forwarding.target;
  }

  /** Which coordinator requests this broker serves in a cluster (BrokerApi.coordinators); undefined alone. */
  get coordinators(): CoordinatorGate | undefined {
    return this.cluster?.services;
  }

  /** Starts the network front end (WebSocket protocol, HTTP API, metrics) on this broker. */
  async listen(options: ListenOptions = {}): Promise<BrokerServer> {
    this.assertOpen();
    const { startServer } = await import('./server/server.js');
    // The server's timers (handshake, body timeouts) run on the broker's clock unless told otherwise.
    return startServer(this, { clock: this.clock, ...options });
  }

  /**
   * Closes the engine (at once: later calls fail with BROKER_CLOSING, as without a cluster) and, if a
   * member, leaves the cluster alongside (its session is revoked, so the others react at once, not
   * after the session timeout); resolves when both are done. Idempotent.
   */
  override close(): Promise<void> {
    if (this.closing !== undefined) return this.closing;
    const cluster = this.cluster;
    this.cluster = undefined;
    const engineClosed = super.close();
    this.closing =
      cluster === undefined
        ? engineClosed
        : (async () => {
            try {
              await cluster.close();
            } finally {
              await engineClosed;
            }
          })();
    return this.closing;
  }
}
