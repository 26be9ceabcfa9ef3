/**
 * Services that follow the leadership of their internal topics (docs/CLUSTER.md, "Internal state logs
 * as partitions"): a `ReplicaManager` around the data plane's that starts and stops each service of
 * replicated-state-topics.ts as this broker's leadership of its topics changes.
 *
 * Contract, per service (a group of internal topics, partition 0 of each, `topics[0]` the anchor):
 * - **Runs only while this broker leads all of them**: `start(term)` is called once the data plane
 *   has applied, for every topic of the group, an assignment naming this broker the leader; the
 *   term holds the epoch of each topic (`epochs`, group order) and `fence`, their sum.
 * - **Stops before any of them moves**: before the data plane is told anything that ends this
 *   broker's leadership of one of the topics at the term's epoch (another leader, a new epoch,
 *   removal), `stop(why)` is called (synchronously: the service must refuse every later write to its
 *   state logs before the follower starts truncating them). A same-epoch assignment (an ISR change)
 *   keeps the term.
 * - **One term at a time, a new fence each time**: every change of any topic's leader bumps that
 *   topic's epoch (partition-planner.ts), so a later term of the service — on any broker — has a
 *   larger fence. Forwarding uses it as the service's producer epoch (src/cluster/forwarding/).
 * - Calls for one service are serialized (all its topics on one chain); a stale assignment (an epoch
 *   below the one seen) goes to the data plane only. `start` may be async (recovery): the term
 *   counts as running from when `start` is called; a `start` that fails leaves the service stopped
 *   and fails the `applyAssignment` call (the assignment watcher retries it, which starts again).
 * - Until its first term a service is stopped (`stop` is called once by `follow`).
 *
 * Other topics and partitions are forwarded to the data plane untouched.
 */
import { InvalidArgumentError } from '../../errors.js';
import type { BrokerEndpoint, PartitionAssignment, ReplicaManager } from '../partition-role.js';
import type { StateServiceTopics } from './replicated-state-topics.js';

/** One term of a service on this broker: it leads every topic of its group at `epochs`. */
export interface ServiceTerm {
  readonly service: string;
  /** The leader epoch of each topic of the group, in group order. */
  readonly epochs: readonly number[];
  /** The sum of `epochs`: larger for every later term of the service, on any broker. */
  readonly fence: number;
}

export interface ServiceActions {
  /** Stop serving at once (requests fail NOT_COORDINATOR, the state logs refuse writes). */
  stop(why: string): void;
  /** Recover the state from the topics' logs as they are and serve for `term`. */
  start(term: ServiceTerm): void | Promise<void>;
}

/** What the broker knows of a service (for NOT_COORDINATOR messages and tests). */
export interface FollowedServiceView {
  readonly service: string;
  readonly topics: readonly string[];
  /** The running term, or null. */
  readonly term: ServiceTerm | null;
  /** Per topic (group order): the leader last assigned (-1: none or removed) and its epoch. */
  readonly leaders: readonly number[];
  readonly epochs: readonly number[];
}

interface FollowedService extends FollowedServiceView {
  readonly actions: ServiceActions;
  term: ServiceTerm | null;
  readonly leaders: number[];
  readonly epochs: number[];
  /** Per topic: the data plane applied this broker as leader at `epochs[i]`. */
  readonly applied: boolean[];
  chain: Promise<void>;
}

export class FollowedServices implements ReplicaManager {
  private readonly services = new Map<string, FollowedService>();
  /** Topic -> its service and index in the group. */
  private readonly byTopic = new Map<string, { service: FollowedService; index: number }>();

  constructor(
    private readonly brokerId: number,
    private readonly inner: ReplicaManager,
  ) {}

  /** Binds a service to its topics; it is stopped until this broker leads them all. */
  follow(group: StateServiceTopics, actions: ServiceActions): void {
    if (group.topics.length === 0 || this.services.has(group.service)) {
      throw new InvalidArgumentError(`service ${group.service}: no topics, or followed twice`);
    }
    for (const topic of group.topics) {
      if (this.byTopic.has(topic))
        throw new InvalidArgumentError(`internal topic ${topic} is in two services`);
    }
    const count = group.topics.length;
    const service: FollowedService = {
      service: group.service,
      topics: [...group.topics],
      actions,
      term: null,
      leaders: new Array<number>(count).fill(-1),
      epochs: new Array<number>(count).fill(-1),
      applied: new Array<boolean>(count).fill(false),
      chain: Promise.resolve(),
    };
    actions.stop(`waiting for the cluster to assign ${group.topics.join(', ')}`);
    this.services.set(group.service, service);
    group.topics.forEach((topic, index) => {
      this.byTopic.set(topic, { service, index });
    });
  }

  /** The service owning internal topic `topic`, or undefined. */
  serviceOf(topic: string): FollowedServiceView | undefined {
    return this.byTopic.get(topic)?.service;
  }

  /** The running term of service `service`, or null. */
  term(service: string): ServiceTerm | null {
    return this.services.get(service)?.term ?? null;
  }

  applyAssignment(
    assignment: PartitionAssignment,
    endpoints: ReadonlyMap<number, BrokerEndpoint>,
  ): Promise<void> {
    const bound = assignment.partition === 0 ? this.byTopic.get(assignment.topic) : undefined;
    if (bound === undefined) return this.inner.applyAssignment(assignment, endpoints);
    const { service, index } = bound;
    return this.serialized(service, async () => {
      const { leaderId, leaderEpoch } = assignment;
      if (leaderEpoch < (service.epochs[index] as number)) {
        return this.inner.applyAssignment(assignment, endpoints);
      }
      const leading = leaderId === this.brokerId;
      const term = service.term;
      if (term !== null && (!leading || leaderEpoch !== term.epochs[index])) {
        this.stop(service, `broker ${leaderId} leads ${assignment.topic} at epoch ${leaderEpoch}`);
      }
      if (leaderEpoch !== service.epochs[index] || leaderId !== service.leaders[index]) {
        service.applied[index] = false;
      }
      service.leaders[index] = leaderId;
      service.epochs[index] = leaderEpoch;
      await this.inner.applyAssignment(assignment, endpoints);
      service.applied[index] = leading;
      if (service.term === null && service.applied.every(Boolean)) await this.start(service);
    });
  }

  removePartition(topic: string, partition: number): Promise<void> {
    const bound = partition === 0 ? this.byTopic.get(topic) : undefined;
    if (bound === undefined) return this.inner.removePartition(topic, partition);
    const { service, index } = bound;
    return this.serialized(service, async () => {
      if (service.term !== null) this.stop(service, `${topic} was removed from broker ${this.brokerId}`);
      service.leaders[index] = -1;
      service.applied[index] = false;
      await this.inner.removePartition(topic, partition);
    });
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  private stop(service: FollowedService, why: string): void {
    service.term = null;
    service.actions.stop(why);
  }

  private async start(service: FollowedService): Promise<void> {
    const epochs = [...service.epochs];
    const term: ServiceTerm = {
      service: service.service,
      epochs,
      fence: epochs.reduce((sum, epoch) => sum + epoch, 0),
    };
    service.term = term;
    try {
      await service.actions.start(term);
    } catch (error) {
      if (service.term === term)
        this.stop(service, `${service.service} failed to start: ${(error as Error).message}`);
      throw error;
    }
  }

  private serialized(service: FollowedService, action: () => Promise<void>): Promise<void> {
    const run = service.chain.then(action);
    service.chain = run.catch(() => undefined);
    return run;
  }
}
