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
import type { OpenedQueueSource, QueueSources } from '../../broker/queues/queue-partition-source.js';
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
  private readonly open_ = new Set<SwitchingSource>();

  constructor(private readonly options: ClusterQueueSourcesOptions) {
    this.budget = new RemoteCacheBudget(options.cacheBytesTotalMax ?? queueRemoteCacheBytesTotalMax);
  }

  /** Sources open now. */
  get size(): number {
    return this.open_.size;
  }

  /** Remote readers running now. */
  get readers(): number {
    let count = 0;
    for (const source of this.open_) if (source.reader !== null) count++;
    return count;
  }

  open(partition: Partition, floor: () => number, onData: () => void): SwitchingSource {
    const max = this.options.readersMax ?? queueRemoteReadersMax;
    if (this.open_.size >= max) {
      throw new SpillwayError(
        'TOO_MANY_REQUESTS',
        `more than ${max} queue partitions read at once (queueRemoteReadersMax)`,
      );
    }
    const source = new SwitchingSource(
      partition,
      () => this.newReader(partition, floor, onData),
      () => this.leadsHere(partition),
    );
    source.onClose = () => this.open_.delete(source);
    this.open_.add(source);
    return source;
  }

  /** Closes every source (the term ended). */
  stopAll(): void {
    for (const source of [...this.open_]) source.close();
  }

  private leadsHere(partition: Partition): boolean {
    return this.options.view.leaderOf(partition.topic, partition.index)?.brokerId === this.options.brokerId;
  }

  private newReader(partition: Partition, floor: () => number, onData: () => void): RemotePartitionReader {
    const { view, brokerId } = this.options;
    return new RemotePartitionReader({
      topic: partition.topic,
      partition: partition.index,
      route: () => {
        const leader = view.leaderOf(partition.topic, partition.index);
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

/** One queue partition's source: the local partition or its remote reader, chosen per call. */
export class SwitchingSource implements OpenedQueueSource {
  reader: RemotePartitionReader | null = null;
  onClose: (() => void) | null = null;
  private closed = false;

  constructor(
    private readonly partition: Partition,
    private readonly makeReader: () => RemotePartitionReader,
    private readonly leadsHere: () => boolean,
  ) {}

  get index(): number {
    return this.partition.index;
  }

  get visibleEndOffset(): number {
    return this.current().visibleEndOffset;
  }

  get damage(): unknown {
    return this.current().damage;
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

  private current(): Partition | RemotePartitionReader {
    if (this.closed || this.leadsHere()) {
      if (this.reader !== null) {
        this.reader.close();
        this.reader = null;
      }
      return this.partition;
    }
    this.reader ??= this.makeReader();
    return this.reader;
  }
}
