/**
 * The transactional producer (docs/TRANSACTIONS.md): `sw.producer({ group, checkTransaction })`.
 * Besides what a Producer does (plain sends), it begins transactions:
 *
 *   const txn = await tp.beginTransaction();   // TXN_BEGIN: the broker records it durably
 *   await txn.send('orders', { key, value });  // TXN_SEND: a half message, invisible to consumers
 *   await txn.commit();                        // TXN_END commit: all of it visible at once (or txn.rollback())
 *
 * `txn.send(topic, { delayMs })` (or `{ deliverAt }`) sends a delayed message: `deliverAt` is
 * absolute; `delayMs` travels as the header `sw-delay-ms` and counts from the commit (the broker
 * adds it to the commit decision's time), so nothing is scheduled before the commit.
 *
 * Each `txn.send` is one batch of one record, stored by the broker under the target topic's
 * durability before it resolves; sends of a transaction may run concurrently (send order is the
 * order of the calls that succeeded). A transaction with a failed send cannot be committed (its
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
import { dueTimeOf } from '../protocol/delayed-record.js';
import { Opcode } from '../protocol/opcodes.js';
import { delayMsHeader, deliverAtHeader } from '../protocol/reserved-headers.js';
import type { CheckAnswer, EndTransactionResult } from '../protocol/transaction-api.js';
import type { MetadataCache } from './metadata-cache.js';
import { partitionOfKey } from './partition-chooser.js';
import { Producer, type ProducerMessage, type ProducerOptions } from './producer.js';
import type { ServerRequest, ServerRequestAnswer } from './server-requests.js';
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

export class TransactionalProducer extends Producer {
  readonly group: string;
  private readonly txnTransport: Transport;
  private readonly txnMetadata: MetadataCache;
  private readonly checkTransaction: CheckTransaction;
  private readonly beginHeader: { group: string; checkAfterMs?: number; maxChecks?: number };
  private registeredSession: number | null | undefined = undefined;
  private registering: Promise<void> | null = null;
  private readonly router: CheckRouter;
  private readonly unsubscribe: () => void;
  private nextPartition = 0;

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

  /** Begins a transaction (recorded durably by the broker before this resolves). */
  async beginTransaction(): Promise<Transaction> {
    await this.ready();
    const response = await this.txnTransport.request(Opcode.txnBegin, this.beginHeader);
    return new Transaction(this, integerOf(response.header, 'id', 'TXN_BEGIN'));
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

  /** @internal */
  async sendHalf(id: number, topic: string, message: ProducerMessage): Promise<TransactionSendResult> {
    if (message === null || typeof message !== 'object') {
      throw new InvalidArgumentError('a message must be an object { key?, value, headers?, partition? }');
    }
    // Delayed: `deliverAt` stays absolute, `delayMs` counts from the commit (the broker adds it to
    // the commit time): `sw-delay-ms` rather than a due time computed here.
    const delayed = dueTimeOf(message, Date.now()) !== null;
    if (message.msgId !== undefined) {
      throw new InvalidArgumentError('msgId deduplication inside a transaction is not supported');
    }
    const metadata = await this.txnMetadata.load(topic);
    const count = metadata.partitionCount;
    let partition: number;
    if (message.partition !== undefined) {
      partition = message.partition;
      if (!Number.isSafeInteger(partition) || partition < 0) {
        throw new InvalidArgumentError(`message partition must be an integer >= 0, got ${String(partition)}`);
      }
    } else if (message.key != null) {
      partition = partitionOfKey(message.key, count);
    } else {
      partition = this.nextPartition++ % count;
    }
    const builder = new BatchBuilder({ initialBytes: 256 });
    const record = {
      key: message.key ?? null,
      value: message.value,
      headers: message.headers as Readonly<Record<string, string | Uint8Array | null>> | undefined,
      timestamp: message.timestamp ?? Date.now(),
    };
    builder.append(
      !delayed
        ? record
        : message.delayMs !== undefined
          ? withHeader(record, delayMsHeader, String(message.delayMs))
          : withHeader(record, deliverAtHeader, String(message.deliverAt)),
    );
    const response = await this.txnTransport.request(
      Opcode.txnSend,
      { id, topic, partition, group: this.group },
      builder.finish(delayed ? { attributes: BatchAttributes.delayed } : {}),
    );
    return { partition, halfOffset: integerOf(response.header, 'halfOffset', 'TXN_SEND') };
  }

  /** @internal */
  async endTransaction(id: number, decision: 'commit' | 'rollback'): Promise<EndTransactionResult> {
    const response = await this.txnTransport.request(Opcode.txnEnd, { id, decision, group: this.group });
    return response.header as EndTransactionResult;
  }
}

/** One transaction of a TransactionalProducer. */
export class Transaction {
  readonly id: number;
  private readonly producer: TransactionalProducer;
  private failedSend: unknown = null;
  private readonly sends = new Set<Promise<unknown>>();

  /** @internal */
  constructor(producer: TransactionalProducer, id: number) {
    this.producer = producer;
    this.id = id;
  }

  /** Sends a half message: stored by the broker, invisible to consumers until the commit. */
  send(topic: string, message: ProducerMessage): Promise<TransactionSendResult> {
    const sent = this.producer.sendHalf(this.id, topic, message);
    this.sends.add(sent);
    sent.then(
      () => this.sends.delete(sent),
      (error: unknown) => {
        this.sends.delete(sent);
        this.failedSend ??= error;
      },
    );
    return sent;
  }

  /** Makes every message of the transaction visible at once (after the sends in flight settle). */
  async commit(): Promise<EndTransactionResult> {
    await Promise.allSettled([...this.sends]);
    if (this.failedSend !== null) {
      const reason = this.failedSend instanceof Error ? this.failedSend.message : String(this.failedSend);
      throw new InvalidArgumentError(`transaction ${this.id} had a failed send (${reason}): roll it back`);
    }
    return this.producer.endTransaction(this.id, 'commit');
  }

  /** Discards every message of the transaction. */
  async rollback(): Promise<EndTransactionResult> {
    await Promise.allSettled([...this.sends]);
    return this.producer.endTransaction(this.id, 'rollback');
  }
}

/** `record` with one more header. */
function withHeader(record: RecordInput, name: string, value: string): RecordInput {
  const headers = record.headers;
  const pairs: Array<readonly [string, RecordInput['value']]> =
    headers == null ? [] : Array.isArray(headers) ? [...headers] : Object.entries(headers);
  pairs.push([name, value]);
  return { ...record, headers: pairs };
}
