/**
 * The queue service's sources in a cluster (src/broker/queues/queue-partition-source.ts,
 * docs/CLUSTER.md "Built: shared and key_shared queues"): each queue partition reads its topic
 * partition **locally while this broker leads it** (per this broker's view of etcd) and otherwise
 * through a RemotePartitionReader (remote-partition-reader.ts) fetching from the leader.
 *
 * The choice is made at every call, so a move of the partition's leader either way is followed at
 * the next read: moving away starts a reader at the queue's ack floor, moving here closes the reader
 * (its cache is dropped). What the queue delivered, settled and scheduled lives in the queue
 * partition, not here: a switch loses and repeats nothing. A local partition is read only up to its
 * high watermark (Partition.visibleEndOffset), a remote one only below the leader's.
 *
 * Bounds: at most queueRemoteReadersMax sources open (one more: TOO_MANY_REQUESTS), their caches
 * share queueRemoteCacheBytesTotalMax. `stopAll()` (the queue service's term ends) closes every
 * reader; the queue service drops the sources with its groups.
 */

import type { Partition } from '../../broker/partition.js';
import {
  LocalQueueSource,
  type OpenedQueueSource,
  type QueuePartitionSource,
  type QueueSources,
} from '../../broker/queues/queue-partition-source.js';
import type { Transport } from '../../client/transport.js';
import type { Clock } from '../../clock.js';
import { SpillwayError } from '../../errors.js';
import { queueRemoteCacheBytesTotalMax, queueRemoteReadersMax } from '../../limits.js';
import {
  RemoteCacheBudget,
  RemotePartitionReader,
  type RemoteReaderOptions,
} from './remote-partition-reader.js';

/** Where a partition's leader is, as this broker knows it now. */
export interface QueueSourcesView {
  /** The leader of topic/partition: this broker's id means local; undefined while none is known. */
  leaderOf(topic: string, partition: number): { brokerId: number; url: string } | undefined;
  /** The topic's partition count in the cluster, undefined when it is not a cluster topic. */
  partitionCount(topic: string): number | undefined;
  /** The createdAtMs of the topic's record in the cluster, undefined when it is not a cluster topic. */
  topicCreatedAtMs(topic: string): number | undefined;
  connect(url: string): Promise<Transport>;
}

export interface ClusterQueueSourcesOptions {
  brokerId: number;
  view: QueueSourcesView;
  /** Default queueRemoteReadersMax. */
  readersMax?: number;
  /** Default queueRemoteCacheBytesTotalMax. */
  cacheBytesTotalMax?: number;
  /** Reader settings (tests): cache bytes per reader, window, fetch wait. */
  reader?: Pick<RemoteReaderOptions, 'cacheBytesMax' | 'windowOffsets' | 'fetchWaitMs' | 'fetchBytesMax'>;
  clock?: Clock;
}

export class ClusterQueueSources implements QueueSources {
  readonly budget: RemoteCacheBudget;
  private readonly opened = new Set<SwitchingSource>();

  constructor(private readonly options: ClusterQueueSourcesOptions) {
    this.budget = new RemoteCacheBudget(options.cacheBytesTotalMax ?? queueRemoteCacheBytesTotalMax);
  }

  /** Sources open now. */
  get size(): number {
    return this.opened.size;
  }

  /** Remote readers running now. */
  get readers(): number {
    let count = 0;
    for (const source of this.opened) if (source.reader !== null) count++;
    return count;
  }

  partitionCount(topic: string): number | undefined {
    return this.options.view.partitionCount(topic);
  }

  topicCreatedAtMs(topic: string): number | undefined {
    return this.options.view.topicCreatedAtMs(topic);
  }

  open(
    topic: string,
    index: number,
    local: () => Partition | undefined,
    floor: () => number,
    onData: () => void,
  ): SwitchingSource {
    const max = this.options.readersMax ?? queueRemoteReadersMax;
    if (this.opened.size >= max) {
      throw new SpillwayError(
        'TOO_MANY_REQUESTS',
        `more than ${max} queue partitions read at once (queueRemoteReadersMax)`,
      );
    }
    const { view, brokerId } = this.options;
    const source = new SwitchingSource(
      index,
      local,
      () => this.newReader(topic, index, floor, onData),
      () => view.leaderOf(topic, index)?.brokerId === brokerId,
    );
    source.onClose = () => this.opened.delete(source);
    this.opened.add(source);
    return source;
  }

  /** Closes every source (the term ended). */
  stopAll(): void {
    for (const source of [...this.opened]) source.close();
  }

  private newReader(
    topic: string,
    index: number,
    floor: () => number,
    onData: () => void,
  ): RemotePartitionReader {
    const { view, brokerId } = this.options;
    return new RemotePartitionReader({
      topic,
      partition: index,
      route: () => {
        const leader = view.leaderOf(topic, index);
        return leader === undefined || leader.brokerId === brokerId ? undefined : leader;
      },
      connect: (url) => view.connect(url),
      floor,
      onData,
      budget: this.budget,
      ...this.options.reader,
      ...(this.options.clock !== undefined ? { clock: this.options.clock } : {}),
    });
  }
}

/** What a closed source reads: nothing (its queue partition was dropped with its group). */
const closedSource: Omit<QueuePartitionSource, 'index'> = {
  visibleEndOffset: 0,
  logStartOffset: 0,
  damage: null,
  read: (): { records: Uint8Array; batchCount: number } => ({ records: new Uint8Array(0), batchCount: 0 }),
};

/**
 * One queue partition's source: the local partition while this broker leads it, else its remote
 * reader (always the reader without a local replica), chosen per call.
 */
export class SwitchingSource implements OpenedQueueSource {
  reader: RemotePartitionReader | null = null;
  onClose: (() => void) | null = null;
  private closed = false;
  /** The local partition as a source, made again when the broker's partition object changes. */
  private localSource: LocalQueueSource | null = null;

  constructor(
    readonly index: number,
    /** This broker's partition now (undefined while it holds no replica of the topic). */
    private readonly local: () => Partition | undefined,
    private readonly makeReader: () => RemotePartitionReader,
    private readonly leadsHere: () => boolean,
  ) {}

  get visibleEndOffset(): number {
    return this.current().visibleEndOffset;
  }

  get damage(): unknown {
    return this.current().damage;
  }

  get logStartOffset(): number {
    return this.current().logStartOffset;
  }

  read(offset: number, maxBytes: number): { records: Uint8Array; batchCount: number } {
    return this.current().read(offset, maxBytes);
  }

  settled(): void {
    this.reader?.settled();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.reader?.close();
    this.reader = null;
    this.onClose?.();
  }

  private current(): Omit<QueuePartitionSource, 'index'> {
    if (this.closed) return closedSource;
    const local = this.leadsHere() ? this.local() : undefined;
    if (local !== undefined) {
      if (this.reader !== null) {
        this.reader.close();
        this.reader = null;
      }
      if (this.localSource?.partition !== local) this.localSource = new LocalQueueSource(local);
      return this.localSource;
    }
    this.reader ??= this.makeReader();
    return this.reader;
  }
}
