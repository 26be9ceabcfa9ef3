/**
 * The cluster-wide registry of named idempotent producers (`producerName`; docs/CLUSTER.md, "Built:
 * idempotent producers"): name → (producer id, epoch) in etcd, changed only by compare-and-swap, so
 * any broker answers INIT_PRODUCER with a name, and every broker knows the newest epoch of each named
 * producer id (a watch) to fence older instances on the partitions it leads.
 *
 *   key `name/<name>`  (namespace `/spillway-producers/<cluster>/`) = { version: 1, producerId, producerEpoch, usedAtMs }
 *   key `name-count`   = { version: 1, names }   (how many `name/` keys exist; changed in the same transactions)
 *
 * Registration (`register`): reads the name at revision r; present → writes epoch + 1 under
 * `mod_revision == r` (at producerEpochMax: a new producer id from the id blocks, epoch 0, as a single
 * broker does); absent → a new producer id at epoch 0, created under `create_revision == 0` together
 * with `names + 1` under the count key's revision. A refused write reads again (another broker's
 * registration won): two registrations of one name never get the same (id, epoch).
 *
 * Bounds: at most `namesMax` (producerNamesMax, 10,000) names. A name is kept at least `retentionMs`
 * (producerNameRetentionMs, 7 days) after its last registration (`usedAtMs`, the registering
 * broker's wall clock); names unused that long are removed only when a new name finds the registry
 * full (a sweep, paged, each removal a compare-and-swap with the count). Full and nothing to remove:
 * CLUSTER_UNAVAILABLE, not retriable. Memory per broker: one entry per name (id → epoch, name → id).
 *
 * Fencing knowledge (`epochOf`): this broker's own registrations at once; the others' through a watch
 * on `name/` (etcd sends the event before it answers the write; the registry is loaded when the
 * watch is up, and again after the watch reconnects). Until the watch is up, `epochOf` knows only
 * this broker's registrations (the partition's batch headers still fence, see broker-producers.ts).
 * Unreachable etcd or a value this version cannot read: CLUSTER_UNAVAILABLE.
 */
import { type Namespace, Range, type Watcher } from 'etcd3';
import type { ProducerIdSource } from '../../broker/producers/producer-id-source.js';
import type { ProducerNameRegistry } from '../../broker/producers/producer-name-registry.js';
import { ClusterUnavailableError } from '../../errors.js';
import {
  clusterRetryMsMax,
  clusterRetryMsMin,
  producerEpochMax,
  producerNameRetentionMs,
  producerNamesMax,
  producerNamesPageSize,
} from '../../limits.js';
import type { InitProducerResult } from '../../protocol/producer-api.js';
import { encodeRecord } from '../control/cluster-records.js';
import { etcdCall } from '../control/etcd-call.js';

export const producerNamePrefix = 'name/';
export const producerNameCountKey = 'name-count';

/** The etcd key of a producer name (relative to the producer namespace). */
export const producerNameKey = (name: string): string => `${producerNamePrefix}${name}`;

/** One name's record. */
export interface ProducerNameRecord {
  producerId: number;
  producerEpoch: number;
  usedAtMs: number;
}

/** Refused writes in a row before a registration gives up (each is another broker's write succeeding). */
const registerAttemptsMax = 32;

function parseObject(text: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

const isCount = (value: unknown): value is number =>
  typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;

/** A name's record, or undefined when this version cannot read it. */
export function decodeNameRecord(text: string): ProducerNameRecord | undefined {
  const value = parseObject(text);
  if (value === undefined) return undefined;
  const { producerId, producerEpoch, usedAtMs } = value;
  if (!isCount(producerId) || !isCount(producerEpoch) || producerEpoch > producerEpochMax) return undefined;
  if (!isCount(usedAtMs)) return undefined;
  return { producerId, producerEpoch, usedAtMs };
}

/** The number of names the count key holds, or undefined when this version cannot read it. */
export function decodeNameCount(text: string): number | undefined {
  const names = parseObject(text)?.['names'];
  return isCount(names) ? names : undefined;
}

export interface ProducerNamesOptions {
  namesMax?: number;
  retentionMs?: number;
  /** Wall clock (ms since the epoch) written as `usedAtMs` and compared by the sweep. */
  now?: () => number;
  log?: (line: string) => void;
}

interface KeyValue {
  key: Buffer;
  value: Buffer;
  mod_revision: string;
}

export class ProducerNames implements ProducerNameRegistry {
  private readonly namesMax: number;
  private readonly retentionMs: number;
  private readonly now: () => number;
  private readonly log: (line: string) => void;
  /** Named producer id → the newest epoch seen registered. */
  private readonly epochs = new Map<number, number>();
  /** Name → its producer id and the etcd revision that set it (older events are ignored). */
  private readonly names = new Map<string, { producerId: number; revision: bigint }>();
  private watcher: Watcher | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private closed = false;
  private sweeping: Promise<number> | null = null;
  private markReady: () => void = () => undefined;
  private readonly readyPromise = new Promise<void>((resolve) => {
    this.markReady = resolve;
  });
  /** Registrations answered, names removed by sweeps (tests, metrics). */
  readonly counts = { registrations: 0, swept: 0 };

  constructor(
    private readonly namespace: Namespace,
    private readonly ids: ProducerIdSource,
    options: ProducerNamesOptions = {},
  ) {
    this.namesMax = options.namesMax ?? producerNamesMax;
    this.retentionMs = options.retentionMs ?? producerNameRetentionMs;
    this.now = options.now ?? Date.now;
    this.log = options.log ?? (() => undefined);
  }

  /** Starts the watch and loads the registry (in the background, retried until `close`). */
  start(): void {
    void this.connect(clusterRetryMsMin);
  }

  /** Resolves once the watch is up and the registry loaded (tests). */
  ready(): Promise<void> {
    return this.readyPromise;
  }

  epochOf(producerId: number): number | undefined {
    return this.epochs.get(producerId);
  }

  /** Names this broker knows (tests, metrics). */
  get size(): number {
    return this.names.size;
  }

  async register(name: string): Promise<InitProducerResult> {
    const key = producerNameKey(name);
    for (let attempt = 0; attempt < registerAttemptsMax; attempt++) {
      const [current, count] = await Promise.all([this.read(key), this.read(producerNameCountKey)]);
      if (current !== undefined) {
        const record = this.decode(current);
        const next: ProducerNameRecord =
          record.producerEpoch < producerEpochMax
            ? { producerId: record.producerId, producerEpoch: record.producerEpoch + 1, usedAtMs: this.now() }
            : { producerId: await this.ids.nextProducerId(), producerEpoch: 0, usedAtMs: this.now() };
        const written = await etcdCall('register the producer name', () =>
          this.namespace
            .if(key, 'Mod', '==', current.mod_revision)
            .then(this.namespace.put(key).value(encodeRecord(next)))
            .commit(),
        );
        if (written.succeeded) return this.registered(name, next, written.header.revision);
        continue;
      }
      const names = count === undefined ? 0 : decodeNameCount(count.value.toString('utf8'));
      if (names === undefined) {
        throw new ClusterUnavailableError(
          `the producer name count in etcd cannot be read: ${count!.value.toString('utf8').slice(0, 200)}`,
          { retriable: false },
        );
      }
      if (names >= this.namesMax) {
        if ((await this.sweep()) > 0) continue;
        throw new ClusterUnavailableError(
          `the cluster holds ${names} producer names (producerNamesMax ${this.namesMax}) and none was unused for ${this.retentionMs} ms: no room for "${name}"`,
          { retriable: false },
        );
      }
      const next: ProducerNameRecord = {
        producerId: await this.ids.nextProducerId(),
        producerEpoch: 0,
        usedAtMs: this.now(),
      };
      const written = await etcdCall('register the producer name', () =>
        this.namespace
          .if(key, 'Create', '==', 0)
          .and(
            producerNameCountKey,
            count === undefined ? 'Create' : 'Mod',
            '==',
            count === undefined ? 0 : count.mod_revision,
          )
          .then(
            this.namespace.put(key).value(encodeRecord(next)),
            this.namespace.put(producerNameCountKey).value(encodeRecord({ names: names + 1 })),
          )
          .commit(),
      );
      if (written.succeeded) return this.registered(name, next, written.header.revision);
    }
    throw new ClusterUnavailableError(
      `producer name "${name}" not registered in ${registerAttemptsMax} attempts (it keeps changing)`,
    );
  }

  /**
   * Removes the names unused for `retentionMs` (each under its own and the count's revision);
   * resolves to how many were removed. One sweep at a time per broker.
   */
  sweep(): Promise<number> {
    this.sweeping ??= this.sweepPages().finally(() => {
      this.sweeping = null;
    });
    return this.sweeping;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.markReady();
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    const watcher = this.watcher;
    this.watcher = null;
    await watcher?.cancel().catch(() => undefined);
  }

  private async sweepPages(): Promise<number> {
    const cutoff = this.now() - this.retentionMs;
    let removed = 0;
    await this.pages(async (kv) => {
      const record = decodeNameRecord(kv.value.toString('utf8'));
      // A record this version cannot read is left alone (it still counts).
      if (record === undefined || record.usedAtMs >= cutoff) return;
      const count = await this.read(producerNameCountKey);
      const names = count === undefined ? undefined : decodeNameCount(count.value.toString('utf8'));
      if (count === undefined || names === undefined || names === 0) return;
      const key = kv.key.toString('utf8');
      const written = await etcdCall('remove an unused producer name', () =>
        this.namespace
          .if(key, 'Mod', '==', kv.mod_revision)
          .and(producerNameCountKey, 'Mod', '==', count.mod_revision)
          .then(
            this.namespace.delete().key(key),
            this.namespace.put(producerNameCountKey).value(encodeRecord({ names: names - 1 })),
          )
          .commit(),
      );
      if (written.succeeded) removed++;
    });
    this.counts.swept += removed;
    return removed;
  }

  /** Calls `each` for every `name/` key, `producerNamesPageSize` per etcd request. */
  private async pages(each: (kv: KeyValue) => Promise<void> | void): Promise<void> {
    const end = Range.prefix(producerNamePrefix).end;
    let start: Buffer = Buffer.from(producerNamePrefix);
    for (;;) {
      const response = await etcdCall('read the producer names', () =>
        this.namespace.getAll().inRange(new Range(start, end)).limit(producerNamesPageSize).exec(),
      );
      for (const kv of response.kvs) await each(kv);
      const last = response.kvs[response.kvs.length - 1];
      if (!response.more || last === undefined) return;
      start = Buffer.concat([last.key, Buffer.from([0])]);
    }
  }

  private async read(key: string): Promise<KeyValue | undefined> {
    const response = await etcdCall('read the producer name registry', () => this.namespace.get(key).exec());
    return response.kvs[0];
  }

  private decode(kv: KeyValue): ProducerNameRecord {
    const record = decodeNameRecord(kv.value.toString('utf8'));
    if (record === undefined) {
      throw new ClusterUnavailableError(
        `the producer name record ${kv.key.toString('utf8')} in etcd cannot be read: ${kv.value.toString('utf8').slice(0, 200)}`,
        { retriable: false },
      );
    }
    return record;
  }

  private registered(name: string, record: ProducerNameRecord, revision: string): InitProducerResult {
    this.seen(name, record, BigInt(revision));
    this.counts.registrations++;
    return { producerId: record.producerId, producerEpoch: record.producerEpoch };
  }

  /** Takes a name's record seen at `revision` (ignored if this broker saw a newer one). */
  private seen(name: string, record: ProducerNameRecord | null, revision: bigint): void {
    const known = this.names.get(name);
    if (known !== undefined && known.revision >= revision) return;
    if (known !== undefined && (record === null || known.producerId !== record.producerId)) {
      this.epochs.delete(known.producerId);
    }
    if (record === null) {
      this.names.delete(name);
      return;
    }
    this.names.set(name, { producerId: record.producerId, revision });
    const epoch = this.epochs.get(record.producerId);
    if (epoch === undefined || epoch < record.producerEpoch)
      this.epochs.set(record.producerId, record.producerEpoch);
  }

  private nameOf(kv: KeyValue): string {
    return kv.key.toString('utf8').slice(producerNamePrefix.length);
  }

  private async connect(delayMs: number): Promise<void> {
    if (this.closed) return;
    let watcher: Watcher | null = null;
    try {
      watcher = await etcdCall('watch the producer names', () =>
        this.namespace.watch().prefix(producerNamePrefix).create(),
      );
      if (this.closed) {
        await watcher.cancel().catch(() => undefined);
        return;
      }
      watcher.on('put', (kv) => {
        const record = decodeNameRecord(kv.value.toString('utf8'));
        if (record !== undefined) this.seen(this.nameOf(kv), record, BigInt(kv.mod_revision));
      });
      watcher.on('delete', (kv) => this.seen(this.nameOf(kv), null, BigInt(kv.mod_revision)));
      // After a reconnect, events may have been compacted away: a full load makes up for them.
      watcher.on('connected', () => void this.load().catch(() => undefined));
      watcher.on('error', (error) => this.log(`producer names watch: ${error.message}`));
      await this.load();
      if (this.closed) {
        await watcher.cancel().catch(() => undefined);
        return;
      }
      this.watcher = watcher;
      this.markReady();
    } catch (error) {
      await watcher?.cancel().catch(() => undefined);
      this.log(`producer names: ${(error as Error).message}; retrying`);
      this.retryTimer = setTimeout(() => {
        this.retryTimer = null;
        void this.connect(Math.min(clusterRetryMsMax, delayMs * 2));
      }, delayMs);
      this.retryTimer.unref();
    }
  }

  /** Reads every name into memory (each taken at its mod revision: newer events still win). */
  private async load(): Promise<void> {
    await this.pages((kv) => {
      const record = decodeNameRecord(kv.value.toString('utf8'));
      if (record !== undefined) this.seen(this.nameOf(kv), record, BigInt(kv.mod_revision));
    });
  }
}
