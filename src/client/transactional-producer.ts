/**
 * The transactional producer (docs/TRANSACTIONS.md): `sw.producer({ group, checkTransaction })`.
 * Besides what a Producer does (plain sends), it begins transactions:
 *
 *   const txn = await tp.beginTransaction();   // an id reserved by TXN_IDS: no request of its own
 *   await txn.send('orders', { key, value });  // TXN_SEND (the first one begins it): a half message
 *   await txn.commit();                        // TXN_END commit: all of it visible at once (or txn.rollback())
 *
 * Begin: the producers of a connection reserve transaction ids in blocks (TXN_IDS,
 * transaction-ids.ts); `beginTransaction` takes the next one, and the first
 * TXN_SEND (or TXN_END) of the transaction carries `begin`, which begins it on the broker. A broker
 * without TXN_IDS (UNKNOWN_OPCODE) gets one TXN_BEGIN per transaction instead. A transaction whose
 * first send comes after its connection was replaced (reconnect) is unknown to the broker
 * (UNKNOWN_TRANSACTION): ids are reserved per connection.
 *
 * `txn.send(topic, { delayMs })` (or `{ deliverAt }`) sends a delayed message: `deliverAt` is
 * absolute; `delayMs` travels as the header `sw-delay-ms` and counts from the commit (the broker
 * adds it to the commit decision's time), so nothing is scheduled before the commit. Delayed
 * messages travel in batches of their own (the batch's delayed attribute).
 *
 * Sends: each TXN_SEND carries its number in the transaction (`seq`, from 0), so one resent after
 * its coordinator moved (cluster-transport.ts reroutes it) is answered with the halves stored the
 * first time. The `txn.send` calls of one transaction made in the same turn of the event loop go in one
 * TXN_SEND (one batch per target partition, in call order; at most sendCoalesceBytesMax bytes per
 * request), stored by the broker under the target topics' durability before they resolve; sends of
 * a transaction may run concurrently (send order within a partition is the order of the calls that
 * succeeded). A transaction with a failed send cannot be committed (its
 * commit rejects with INVALID_ARGUMENT): roll it back. `commit()` resolves with the outcome
 * (`duplicate` true when the transaction had already been committed) and rejects with
 * TRANSACTION_ROLLED_BACK when the broker had rolled it back (a check-back answered 'rollback', or
 * maxChecks check-backs went unanswered); `rollback()` likewise, TRANSACTION_COMMITTED.
 *
 * Check-back: the producer registers as a member of its producer group on the connection (TXN_REGISTER,
 * again after every reconnect); the broker asks a member about a transaction left undecided past
 * `checkAfterMs` (server request TXN_CHECK, opcode 65, over the WebSocket or in process), and
 * `checkTransaction` answers 'commit', 'rollback' or 'unknown' (ask again later). Any member of the
 * group may be asked, not only the one that began the transaction. One handler of opcode 65 per
 * connection routes the checks to the producer of their group.
 */
import { InvalidArgumentError } from '../errors.js';
import { BatchAttributes } from '../format/batch-header.js';
import { BatchBuilder, type RecordInput } from '../format/record-batch.js';
import { transactionHalfBatchBytesMax } from '../limits.js';
import { dueTimeOf } from '../protocol/delayed-record.js';
import { Opcode } from '../protocol/opcodes.js';
import { delayMsHeader, deliverAtHeader } from '../protocol/reserved-headers.js';
import type { CheckAnswer, EndTransactionResult } from '../protocol/transaction-api.js';
import type { MetadataCache } from './metadata-cache.js';
import { partitionOfKey } from './partition-chooser.js';
import { Producer, type ProducerMessage, type ProducerOptions } from './producer.js';
import type { ServerRequest, ServerRequestAnswer } from './server-requests.js';
import { transactionIdsOf } from './transaction-ids.js';
import type { Transport } from './transport.js';
import { integerOf } from './wire.js';

export type { CheckAnswer, EndTransactionResult };

/** What a check-back asks about. */
export interface TransactionCheck {
  id: number;
  group: string;
  /** Broker wall time of the begin, ms. */
  beganAtMs: number;
  /** Check-backs made so far, this one included. */
  checks: number;
}

export type CheckTransaction = (txn: TransactionCheck) => CheckAnswer | Promise<CheckAnswer>;

export interface TransactionalProducerOptions extends Omit<ProducerOptions, 'group' | 'checkTransaction'> {
  /** The producer group: the broker's check-backs go to any connected member. */
  group: string;
  checkTransaction: CheckTransaction;
  /** Undecided this long after begin, the broker asks the group. Default 5 000 (the broker's). */
  checkAfterMs?: number;
  /** Check-backs before the broker rolls back by itself. Default 5 (the broker's). */
  maxChecks?: number;
}

export interface TransactionSendResult {
  partition: number;
  /** Where the half is kept until the decision (offset in `__txn_half`). */
  halfOffset: number;
}

/** Routes the TXN_CHECK requests of one connection to the producer of their group. */
class CheckRouter {
  readonly handlers = new Map<string, CheckTransaction[]>();

  constructor(transport: Transport) {
    transport.onServerRequest(Opcode.txnCheck, (request) => this.answer(request));
  }

  private async answer(request: ServerRequest): Promise<ServerRequestAnswer> {
    const header = request.header as Partial<TransactionCheck> | null;
    const group = header?.group;
    const handler = typeof group === 'string' ? this.handlers.get(group)?.[0] : undefined;
    if (handler === undefined) throw new Error(`no transactional producer of group ${String(group)} here`);
    const check: TransactionCheck = {
      id: integerOf(header, 'id', 'TXN_CHECK'),
      group: group as string,
      beganAtMs: integerOf(header, 'beganAtMs', 'TXN_CHECK'),
      checks: integerOf(header, 'checks', 'TXN_CHECK'),
    };
    const decision = await handler(check);
    if (decision !== 'commit' && decision !== 'rollback' && decision !== 'unknown') {
      throw new Error(`checkTransaction answered ${String(decision)}, not 'commit', 'rollback' or 'unknown'`);
    }
    return { header: { decision } };
  }
}

const routers = new WeakMap<Transport, CheckRouter>();

/** Bytes of batches one coalesced TXN_SEND carries at most (more: another request). */
const sendCoalesceBytesMax = 1024 * 1024;

/** Spare BatchBuilders a producer keeps between TXN_SENDs (the batches are copied out at finish). */
const spareBuildersMax = 8;
/** A builder whose buffer grew past this is dropped rather than kept spare. */
const spareBuilderBytesMax = 64 * 1024;

/** The batch of one (topic, partition, delayed or not) being built for a TXN_SEND. */
interface PartBuilder {
  topic: string;
  partition: number;
  delayed: boolean;
  builder: BatchBuilder;
  sends: QueuedSend[];
}

/** Parts of one TXN_SEND found by a linear look; past this many, by a map. */
const linearPartsMax = 16;

/** A `txn.send` waiting for its TXN_SEND. */
interface QueuedSend {
  topic: string;
  message: ProducerMessage;
  resolve: (result: TransactionSendResult) => void;
  reject: (error: unknown) => void;
  owner: Transaction;
  settled: boolean;
  /** The caller's promise (set once made): a rejection is marked handled (commit reports it). */
  promise: Promise<TransactionSendResult> | null;
}

/** Settles a send once (later calls do nothing) and tells its transaction. */
function resolveSend(send: QueuedSend, result: TransactionSendResult): void {
  if (send.settled) return;
  send.settled = true;
  send.owner.sendSettled(null);
  send.resolve(result);
}

function rejectSend(send: QueuedSend, error: unknown): void {
  if (send.settled) return;
  send.settled = true;
  send.owner.sendSettled(error);
  // A failed send is reported by commit: not an unhandled rejection when the caller does not await it.
  send.promise?.then(undefined, ignore);
  send.reject(error);
}

const ignore = (): void => undefined;

export class TransactionalProducer extends Producer {
  readonly group: string;
  private readonly txnTransport: Transport;
  private readonly txnMetadata: MetadataCache;
  private readonly checkTransaction: CheckTransaction;
  private readonly beginHeader: { group: string; checkAfterMs?: number; maxChecks?: number };
  /** The `begin` of a TXN_SEND / TXN_END (the begin header without the group); never modified. */
  private readonly beginSettings: { checkAfterMs?: number; maxChecks?: number };
  private registeredSession: number | null | undefined = undefined;
  private registering: Promise<void> | null = null;
  private readonly router: CheckRouter;
  private readonly unsubscribe: () => void;
  private nextPartition = 0;
  /** Builders reused by sendHalves (at most spareBuildersMax, each at most spareBuilderBytesMax). */
  private readonly spareBuilders: BatchBuilder[] = [];

  /** @internal Made by Spillway.producer(). */
  constructor(transport: Transport, metadata: MetadataCache, options: TransactionalProducerOptions) {
    if (options === null || typeof options !== 'object')
      throw new InvalidArgumentError('producer options must be an object');
    const { group, checkTransaction, checkAfterMs, maxChecks, ...plain } = options;
    super(transport, metadata, plain);
    if (typeof group !== 'string' || group.length === 0) {
      throw new InvalidArgumentError('a transactional producer needs a producer group (a non-empty string)');
    }
    if (typeof checkTransaction !== 'function') {
      throw new InvalidArgumentError('a transactional producer needs checkTransaction: (txn) => answer');
    }
    this.group = group;
    this.txnTransport = transport;
    this.txnMetadata = metadata;
    this.checkTransaction = checkTransaction;
    this.beginHeader = {
      group,
      ...(checkAfterMs !== undefined ? { checkAfterMs } : {}),
      ...(maxChecks !== undefined ? { maxChecks } : {}),
    };
    const { group: _group, ...settings } = this.beginHeader;
    this.beginSettings = settings;
    let router = routers.get(transport);
    if (router === undefined) {
      router = new CheckRouter(transport);
      routers.set(transport, router);
    }
    this.router = router;
    const handlers = router.handlers.get(group) ?? [];
    handlers.push(checkTransaction);
    router.handlers.set(group, handlers);
    this.unsubscribe = transport.onDisconnect(() => {
      this.registeredSession = undefined;
      if (!transport.closed) this.ready().catch(() => undefined);
    });
    this.ready().catch(() => undefined);
  }

  /**
   * Resolves once this connection is a member of the producer group (check-backs may come to it).
   * Done by itself at creation and after reconnects; begin waits for it.
   */
  ready(): Promise<void> {
    if (
      this.registeredSession !== undefined &&
      this.registeredSession === this.txnTransport.hello.sessionId
    ) {
      return Promise.resolve();
    }
    if (this.registering === null) {
      this.registering = this.txnTransport
        .request(Opcode.txnRegister, { group: this.group })
        .then(() => {
          this.registeredSession = this.txnTransport.hello.sessionId;
        })
        .finally(() => {
          this.registering = null;
        });
    }
    return this.registering;
  }

  /**
   * Begins a transaction: takes a reserved id (TXN_IDS when none is left), begun on the broker by the
   * transaction's first send or end. Against a broker without TXN_IDS: one TXN_BEGIN.
   */
  beginTransaction(): Promise<Transaction> {
    // Registered on this connection and an id left: no await (the common case).
    if (
      this.registeredSession !== undefined &&
      this.registeredSession === this.txnTransport.hello.sessionId
    ) {
      const id = transactionIdsOf(this.txnTransport).takeNow(this.group);
      if (id !== undefined) return Promise.resolve(new Transaction(this, id, true));
    }
    return this.beginWaiting();
  }

  private async beginWaiting(): Promise<Transaction> {
    await this.ready();
    const id = await transactionIdsOf(this.txnTransport).take(this.group);
    if (id !== null) return new Transaction(this, id, true);
    const response = await this.txnTransport.request(Opcode.txnBegin, this.beginHeader);
    return new Transaction(this, integerOf(response.header, 'id', 'TXN_BEGIN'), false);
  }

  override async close(): Promise<void> {
    const handlers = this.router.handlers.get(this.group);
    if (handlers !== undefined) {
      const index = handlers.indexOf(this.checkTransaction);
      if (index >= 0) handlers.splice(index, 1);
      if (handlers.length === 0) this.router.handlers.delete(this.group);
    }
    this.unsubscribe();
    await super.close();
  }

  /**
   * The partition of a message of a transaction (as a plain send would pick it); a promise only when
   * the topic's partition count must be fetched first. Throws for a bad message.
   */
  private partitionOf(topic: string, message: ProducerMessage): number | Promise<number> {
    if (message === null || typeof message !== 'object') {
      throw new InvalidArgumentError('a message must be an object { key?, value, headers?, partition? }');
    }
    if (message.msgId !== undefined) {
      throw new InvalidArgumentError('msgId deduplication inside a transaction is not supported');
    }
    if (message.partition !== undefined) {
      const partition = message.partition;
      if (!Number.isSafeInteger(partition) || partition < 0) {
        throw new InvalidArgumentError(`message partition must be an integer >= 0, got ${String(partition)}`);
      }
      return partition;
    }
    const choose = (count: number): number =>
      message.key != null ? partitionOfKey(message.key, count) : this.nextPartition++ % count;
    const cached = this.txnMetadata.peek(topic);
    if (cached !== undefined) return choose(cached.partitionCount);
    return this.txnMetadata.load(topic).then((metadata) => choose(metadata.partitionCount));
  }

  /**
   * @internal Sends the queued messages of transaction `id` in as few TXN_SEND as fit
   * sendCoalesceBytesMax: per request one batch per target partition, in call order. `begin`: the
   * first request(s) of a reserved id carry it. Settles every queued send.
   */
  sendHalves(id: number, queued: QueuedSend[], begin: boolean): Promise<boolean> {
    return queued.length === 1 ? this.sendHalf(id, queued[0]!, begin) : this.sendParts(id, queued, begin);
  }

  /** sendHalves of several sends. */
  private async sendParts(id: number, queued: QueuedSend[], begin: boolean): Promise<boolean> {
    const placed: Array<{ send: QueuedSend; partition: number }> = [];
    for (const send of queued) {
      try {
        const partition = this.partitionOf(send.topic, send.message);
        placed.push({ send, partition: typeof partition === 'number' ? partition : await partition });
      } catch (error) {
        rejectSend(send, error);
      }
    }
    let begun = false;
    let start = 0;
    while (start < placed.length) {
      // Few parts (the common case): found by a linear look, without a key string per send.
      const builders: PartBuilder[] = [];
      let byKey: Map<string, PartBuilder> | null = null;
      let bytes = 0;
      let index = start;
      const now = Date.now();
      for (; index < placed.length && bytes < sendCoalesceBytesMax; index++) {
        const { send, partition } = placed[index]!;
        const message = send.message;
        // Delayed: `deliverAt` stays absolute, `delayMs` counts from the commit (the broker adds it
        // to the commit time): `sw-delay-ms` rather than a due time computed here. A batch of its own.
        let delayed: boolean;
        try {
          delayed = dueTimeOf(message, now) !== null;
        } catch (error) {
          rejectSend(send, error);
          continue;
        }
        let part: PartBuilder | undefined;
        if (byKey === null) {
          for (const candidate of builders) {
            if (
              candidate.partition === partition &&
              candidate.delayed === delayed &&
              candidate.topic === send.topic
            ) {
              part = candidate;
              break;
            }
          }
        } else {
          part = byKey.get(`${partition} ${delayed ? 'd' : 'p'} ${send.topic}`);
        }
        if (part === undefined) {
          part = { topic: send.topic, partition, delayed, builder: this.takeBuilder(), sends: [] };
          builders.push(part);
          if (byKey === null && builders.length > linearPartsMax) {
            byKey = new Map();
            for (const each of builders) {
              byKey.set(`${each.partition} ${each.delayed ? 'd' : 'p'} ${each.topic}`, each);
            }
          } else if (byKey !== null) {
            byKey.set(`${partition} ${delayed ? 'd' : 'p'} ${send.topic}`, part);
          }
        }
        const before = part.builder.sizeBytes;
        try {
          const record = recordOf(message, now);
          const appended = !delayed
            ? record
            : message.delayMs !== undefined
              ? withHeader(record, delayMsHeader, String(message.delayMs))
              : withHeader(record, deliverAtHeader, String(message.deliverAt));
          if (!part.builder.append(appended)) break; // this batch is full: the rest goes next
        } catch (error) {
          rejectSend(send, error);
          continue;
        }
        part.sends.push(send);
        bytes += part.builder.sizeBytes - before;
      }
      start = index;
      const parts: Array<{ topic: string; partition: number; sends: QueuedSend[] }> = [];
      const batches: Uint8Array[] = [];
      for (const part of builders) {
        if (part.sends.length > 0) {
          // A copy the request owns (the builder goes back to the spares): from Buffer's pool when small.
          const view = part.builder.finish(part.delayed ? delayedFinish : plainFinish);
          const batch = Buffer.allocUnsafe(view.length);
          batch.set(view);
          parts.push(part);
          batches.push(batch);
        }
        this.releaseBuilder(part.builder);
      }
      if (parts.length === 0) continue;
      const header: Record<string, unknown> = {
        id,
        group: this.group,
        seq: parts[0]!.sends[0]!.owner.takeSeq(),
      };
      if (begin && !begun) header['begin'] = this.beginSettings;
      let body: Uint8Array;
      if (parts.length === 1) {
        header['topic'] = parts[0]!.topic;
        header['partition'] = parts[0]!.partition;
        body = batches[0]!;
      } else {
        header['parts'] = parts.map((part) => ({ topic: part.topic, partition: part.partition }));
        body = Buffer.concat(batches);
      }
      try {
        const response = await this.txnTransport.request(Opcode.txnSend, header, body);
        begun = true;
        const offsets =
          parts.length === 1
            ? [integerOf(response.header, 'halfOffset', 'TXN_SEND')]
            : ((response.header as { halfOffsets?: unknown } | null)?.halfOffsets as number[] | undefined);
        if (!Array.isArray(offsets) || offsets.length !== parts.length) {
          throw new InvalidArgumentError('TXN_SEND answered without the offsets of its halves');
        }
        parts.forEach((part, i) => {
          for (const send of part.sends) {
            resolveSend(send, { partition: part.partition, halfOffset: offsets[i]! });
          }
        });
      } catch (error) {
        for (const part of parts) for (const send of part.sends) rejectSend(send, error);
      }
    }
    return begun;
  }

  /**
   * sendHalves of a single send (the common case): the same request as the general path makes for
   * it, without its per-part lists and maps.
   */
  private async sendHalf(id: number, send: QueuedSend, begin: boolean): Promise<boolean> {
    const message = send.message;
    const now = Date.now();
    let partition: number;
    let batch: Buffer;
    let delayed: boolean;
    try {
      const chosen = this.partitionOf(send.topic, message);
      partition = typeof chosen === 'number' ? chosen : await chosen;
      delayed = dueTimeOf(message, now) !== null;
    } catch (error) {
      rejectSend(send, error);
      return false;
    }
    const builder = this.takeBuilder();
    try {
      const record = recordOf(message, now);
      builder.append(
        !delayed
          ? record
          : message.delayMs !== undefined
            ? withHeader(record, delayMsHeader, String(message.delayMs))
            : withHeader(record, deliverAtHeader, String(message.deliverAt)),
      );
      // A copy the request owns (the builder goes back to the spares): from Buffer's pool when small.
      const view = builder.finish(delayed ? delayedFinish : plainFinish);
      batch = Buffer.allocUnsafe(view.length);
      batch.set(view);
    } catch (error) {
      rejectSend(send, error);
      return false;
    } finally {
      this.releaseBuilder(builder);
    }
    const seq = send.owner.takeSeq();
    const header = begin
      ? { id, group: this.group, seq, begin: this.beginSettings, topic: send.topic, partition }
      : { id, group: this.group, seq, topic: send.topic, partition };
    let answer: unknown;
    try {
      answer = (await this.txnTransport.request(Opcode.txnSend, header, batch)).header;
    } catch (error) {
      rejectSend(send, error);
      return false;
    }
    try {
      resolveSend(send, { partition, halfOffset: integerOf(answer, 'halfOffset', 'TXN_SEND') });
    } catch (error) {
      rejectSend(send, error);
    }
    return true; // answered: begun on the broker
  }

  private takeBuilder(): BatchBuilder {
    const spare = this.spareBuilders.pop();
    if (spare === undefined) {
      return new BatchBuilder({ initialBytes: 256, maxBatchBytes: transactionHalfBatchBytesMax });
    }
    spare.reset();
    return spare;
  }

  private releaseBuilder(builder: BatchBuilder): void {
    if (this.spareBuilders.length < spareBuildersMax && builder.capacityBytes <= spareBuilderBytesMax) {
      this.spareBuilders.push(builder);
    }
  }

  /** @internal `begin`: the transaction (a reserved id) may not be begun on the broker yet. */
  endTransaction(id: number, decision: 'commit' | 'rollback', begin: boolean): Promise<EndTransactionResult> {
    const header = begin
      ? { id, decision, group: this.group, begin: this.beginSettings }
      : { id, decision, group: this.group };
    return this.txnTransport.request(Opcode.txnEnd, header).then(headerOf);
  }
}

const resolved = Promise.resolve();
const headerOf = (response: { header: unknown }): EndTransactionResult =>
  response.header as EndTransactionResult;
const plainFinish = {};
const delayedFinish = { attributes: BatchAttributes.delayed };

/** One transaction of a TransactionalProducer. */
export class Transaction {
  readonly id: number;
  private readonly producer: TransactionalProducer;
  private failedSend: unknown = null;
  /** Sends not settled yet, and who waits for none to be left. */
  private sendsInFlight = 0;
  private sendsIdle: Array<() => void> | null = null;
  /** A reserved id not known to be begun on the broker yet: requests carry `begin`. */
  private beginPending: boolean;
  private queued: QueuedSend[] = [];
  private readonly flushQueued = (): void => this.flush();
  /** The number of this transaction's next TXN_SEND (`seq`): a resend of one is not stored twice. */
  private nextSeq = 0;

  /** @internal `leased`: a reserved id, begun by the first send or end. */
  constructor(producer: TransactionalProducer, id: number, leased: boolean) {
    this.producer = producer;
    this.id = id;
    this.beginPending = leased;
  }

  /**
   * Sends a half message: stored by the broker, invisible to consumers until the commit. The sends
   * of one turn of the event loop travel together (see the file header).
   */
  send(topic: string, message: ProducerMessage): Promise<TransactionSendResult> {
    let queued!: QueuedSend;
    const sent = new Promise<TransactionSendResult>((resolve, reject) => {
      queued = { topic, message, resolve, reject, owner: this, settled: false, promise: null };
    });
    queued.promise = sent;
    // A promise reaction rather than queueMicrotask (which wraps each call in an AsyncResource).
    if (this.queued.length === 0) void resolved.then(this.flushQueued);
    this.queued.push(queued);
    this.sendsInFlight++;
    return sent;
  }

  /** @internal The number of a new TXN_SEND of this transaction. */
  takeSeq(): number {
    return this.nextSeq++;
  }

  /** @internal One of this transaction's sends settled (`error` null: it succeeded). */
  sendSettled(error: unknown): void {
    if (error !== null) this.failedSend ??= error;
    this.sendsInFlight--;
    if (this.sendsInFlight === 0 && this.sendsIdle !== null) {
      const waiters = this.sendsIdle;
      this.sendsIdle = null;
      for (const waiter of waiters) waiter();
    }
  }

  /** Resolves once no send of this transaction is in flight. */
  private sendsSettled(): Promise<void> {
    if (this.sendsInFlight === 0) return resolved;
    return new Promise((resolve) => {
      this.sendsIdle ??= [];
      this.sendsIdle.push(resolve);
    });
  }

  private flush(): void {
    const queued = this.queued;
    this.queued = [];
    if (queued.length === 0) return;
    this.producer.sendHalves(this.id, queued, this.beginPending).then(
      (begun) => {
        if (begun) this.beginPending = false;
      },
      (error: unknown) => {
        for (const send of queued) rejectSend(send, error);
      },
    );
  }

  /** Makes every message of the transaction visible at once (after the sends in flight settle). */
  commit(): Promise<EndTransactionResult> {
    // Sends settled and none failed (the common case): straight to TXN_END.
    if (this.sendsInFlight === 0 && this.failedSend === null) return this.end('commit');
    return this.commitAfterSends();
  }

  private async commitAfterSends(): Promise<EndTransactionResult> {
    if (this.sendsInFlight > 0) await this.sendsSettled();
    if (this.failedSend !== null) {
      const reason = this.failedSend instanceof Error ? this.failedSend.message : String(this.failedSend);
      throw new InvalidArgumentError(`transaction ${this.id} had a failed send (${reason}): roll it back`);
    }
    return this.end('commit');
  }

  /** Discards every message of the transaction. */
  async rollback(): Promise<EndTransactionResult> {
    if (this.sendsInFlight > 0) await this.sendsSettled();
    return this.end('rollback');
  }

  private end(decision: 'commit' | 'rollback'): Promise<EndTransactionResult> {
    try {
      return this.producer.endTransaction(this.id, decision, this.beginPending).then(this.ended);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** TXN_END answered: the transaction is begun on the broker (later requests carry no `begin`). */
  private readonly ended = (result: EndTransactionResult): EndTransactionResult => {
    this.beginPending = false;
    return result;
  };
}

/** `record` with one more header. */
function withHeader(record: RecordInput, name: string, value: string): RecordInput {
  const headers = record.headers;
  const pairs: Array<readonly [string, RecordInput['value']]> =
    headers == null ? [] : Array.isArray(headers) ? [...headers] : Object.entries(headers);
  pairs.push([name, value]);
  return { ...record, headers: pairs };
}

/** The record a transactional send appends (the message's fields; its timestamp defaults to `now`). */
function recordOf(message: ProducerMessage, now: number): RecordInput {
  return {
    key: message.key ?? null,
    value: message.value,
    headers: message.headers as Readonly<Record<string, string | Uint8Array | null>> | undefined,
    timestamp: message.timestamp ?? now,
  };
}
