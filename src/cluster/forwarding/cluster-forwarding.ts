/**
 * One broker's forwarding (forwarder.ts has the contract): the receiving side other brokers' services
 * reach through FORWARD_PRODUCE / FORWARD_SCAN (`target`, `BrokerApi.forwarding`), and `forwarder(term)`
 * for this broker's own services, routed by its view of the cluster (the partition's leader from
 * etcd, its advertised URL). Connections to other brokers are shared by every forwarder: one
 * WebSocket per broker URL (opened on first use, reopened by the transport after a loss; a first
 * connection that failed is forgotten so the next attempt opens another), closed by `close()`.
 */
import type { Transport } from '../../client/transport.js';
import type { Clock } from '../../clock.js';
import { SpillwayError } from '../../errors.js';
import { forwardRequestTimeoutMs } from '../../limits.js';
import type { ProduceResult } from '../../protocol/broker-api.js';
import { coordinatorTopics } from '../../protocol/coordinator-routing.js';
import { Opcode } from '../../protocol/opcodes.js';
import { BrokerConnections } from '../broker-connections.js';
import type { ServiceTerm } from '../state-services/followed-services.js';
import type { StateServiceTopics } from '../state-services/replicated-state-topics.js';
import { ForwardTarget, type ForwardTargetBroker } from './forward-target.js';
import { Forwarder, type ForwardRoute } from './forwarder.js';

/** What of the cluster node forwarding reads: partition records and live brokers' URLs. */
export interface ForwardingView {
  topicView(topic: string):
    | {
        record: { partitions: number; createdAtMs: number; config: Record<string, number | string> };
        partitions: ({ leaderId: number; leaderEpoch: number; replicas: readonly number[] } | undefined)[];
      }
    | undefined;
  readonly endpoints: ReadonlyMap<number, { url: string }>;
}

export interface ClusterForwardingOptions {
  brokerId: number;
  broker: ForwardTargetBroker;
  /** The services whose fence the cluster view gives (replicated-state-topics.ts). */
  services: readonly StateServiceTopics[];
  /** Token presented to other brokers running with authentication (cluster admin). */
  token?: string;
  clock?: Clock;
}

export class ClusterForwarding {
  readonly target: ForwardTarget;
  private readonly connections: BrokerConnections;
  /** The cluster node's view (set by `attach` once the node is up; until then no route is known). */
  private view: ForwardingView | null = null;

  constructor(private readonly options: ClusterForwardingOptions) {
    this.target = new ForwardTarget(options.broker, (service) => this.fenceInView(service));
    this.connections = new BrokerConnections(
      `spillway-forward-${options.brokerId}`,
      options.token,
      'forwarding',
    );
  }

  /** The topic's record in this broker's view of etcd (the delay service's targets), or undefined. */
  topicView(topic: string): ReturnType<ForwardingView['topicView']> {
    return this.view?.topicView(topic);
  }

  /** Routes by `view` from now on (the cluster node, once started). */
  attach(view: ForwardingView): void {
    this.view = view;
  }

  /**
   * Takes a client's delayed batch for topic/partition (admitted by this broker, its leader) to the
   * broker running the delay service, the leader of `__delay` in this broker's view (DELAY_SCHEDULE,
   * 77), and answers what it answers. NOT_COORDINATOR (retriable: the producer tries again) while no
   * other broker leads `__delay`.
   */
  async delaySchedule(topic: string, partition: number, batch: Uint8Array): Promise<ProduceResult> {
    const route = this.route(coordinatorTopics.delay, 0);
    if (route === undefined || route.brokerId === this.options.brokerId) {
      throw new SpillwayError(
        'NOT_COORDINATOR',
        `delayed messages: no running delay service to take the batch for ${topic}/${partition} yet (the leader of ${coordinatorTopics.delay} is ${route === undefined ? 'unknown' : 'this broker, starting'})`,
      );
    }
    return this.requestDelayService(
      route,
      Opcode.delaySchedule,
      'DELAY_SCHEDULE',
      { topic, partition },
      batch,
    );
  }

  /**
   * Takes a committed transaction's delayed batch (stamped: producerId = the transaction id,
   * baseSequence = the half's index) to the delay service, the leader of `__delay` in this broker's
   * view — this broker's own service in process, another broker with DELAY_SCHEDULE_COMMITTED (73) —
   * and answers what it answers (idempotent there per (id, index)). NOT_COORDINATOR (retriable: the
   * coordinator tries again) while no broker runs the service or it cannot be reached.
   */
  async delayScheduleCommitted(
    topic: string,
    partition: number,
    batch: Uint8Array,
    commitMs: number,
  ): Promise<ProduceResult> {
    const route = this.route(coordinatorTopics.delay, 0);
    if (route === undefined) {
      throw new SpillwayError(
        'NOT_COORDINATOR',
        `delayed messages: no leader of ${coordinatorTopics.delay} known to take a committed batch for ${topic}/${partition}`,
      );
    }
    if (route.brokerId === this.options.brokerId) {
      return this.target.delayScheduleCommitted({ topic, partition, commitMs }, batch);
    }
    return this.requestDelayService(
      route,
      Opcode.delayScheduleCommitted,
      'DELAY_SCHEDULE_COMMITTED',
      { topic, partition, commitMs },
      batch,
    );
  }

  /** One request carrying a delayed batch to the delay service on `route` (another broker); its offsets. */
  private async requestDelayService(
    route: { brokerId: number; url: string },
    opcode: number,
    name: string,
    header: Record<string, unknown>,
    batch: Uint8Array,
  ): Promise<ProduceResult> {
    let transport: Transport;
    try {
      transport = await this.connections.to(route.url);
    } catch (error) {
      throw new SpillwayError(
        'NOT_COORDINATOR',
        `delayed messages: broker ${route.brokerId} (the delay service) cannot be reached: ${String(error)}`,
      );
    }
    const answer = await transport.request(opcode, header, batch, { timeoutMs: forwardRequestTimeoutMs });
    const fields = answer.header as Partial<ProduceResult>;
    if (typeof fields.baseOffset !== 'number' || typeof fields.lastOffset !== 'number') {
      throw new SpillwayError(
        'PROTOCOL_ERROR',
        `${name} answer without offsets from broker ${route.brokerId}`,
      );
    }
    return fields as ProduceResult;
  }

  /** A forwarder for one term of service `term.service` (close it when the term ends). */
  forwarder(term: ServiceTerm): Forwarder {
    return new Forwarder({
      service: term.service,
      fence: term.fence,
      brokerId: this.options.brokerId,
      local: this.target,
      route: (topic, partition) => this.route(topic, partition),
      connect: (url) => this.connections.to(url),
      ...(this.options.clock !== undefined ? { clock: this.options.clock } : {}),
    });
  }

  close(): Promise<void> {
    return this.connections.close();
  }

  /** The leader of topic/partition in this broker's view (url '' when it is this broker), or undefined. */
  leaderOf(topic: string, partition: number): ForwardRoute | undefined {
    return this.route(topic, partition);
  }

  /** The shared connection to another broker (the queue service's remote partition readers). */
  connect(url: string): Promise<Transport> {
    return this.connections.to(url);
  }

  private route(topic: string, partition: number): ForwardRoute | undefined {
    const view = this.view;
    const leaderId = view?.topicView(topic)?.partitions[partition]?.leaderId;
    if (view === null || leaderId === undefined || leaderId < 0) return undefined;
    if (leaderId === this.options.brokerId) return { brokerId: leaderId, url: '' };
    const url = view.endpoints.get(leaderId)?.url;
    return url === undefined ? undefined : { brokerId: leaderId, url };
  }

  /** The service's fence as this broker's view of etcd has it: the sum of its topics' leader epochs. */
  private fenceInView(service: string): number {
    const entry = this.options.services.find((candidate) => candidate.service === service);
    const view = this.view;
    if (entry === undefined || view === null) return 0;
    let fence = 0;
    for (const topic of entry.topics)
      fence += Math.max(0, view.topicView(topic)?.partitions[0]?.leaderEpoch ?? 0);
    return fence;
  }
}
