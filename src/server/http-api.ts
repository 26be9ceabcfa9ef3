/**
 * The HTTP API (docs/PROTOCOL.md, "HTTP API"; routes fixed by API.md), on the same port as the
 * WebSocket protocol. JSON in and out; errors are `{"error":{"code","message"}}` with the status of
 * http-status.ts. Produce builds one record batch per partition with the same codec as the client
 * (and the client's murmur2 partitioner), so messages sent over HTTP are indistinguishable from
 * messages sent over WebSocket; fetch decodes batches into JSON messages.
 *
 * With authentication on (context.security), every route but /healthz needs `Authorization: Bearer
 * TOKEN` (401 UNAUTHENTICATED without a valid one, `www-authenticate: Bearer`), checked before the
 * handler runs, and each route checks the access its WebSocket opcode needs (403 FORBIDDEN):
 * metrics, health details, topic and group lists: cluster describe; topic describe; create and delete:
 * topic admin; produce: topic produce; fetch: topic consume; group describe; receive: group and topic
 * consume; ack and nack: group consume. Produce and fetch bytes are charged to the principal's quotas
 * and their answers held back by the delay the quotas ask for.
 */
import type { HttpRequest, HttpResponse, TemplatedApp } from '@trufflesuite/uws-js-unofficial';
import type { Clock } from '../clock.js';
import { CorruptStoredBatchError, InvalidArgumentError, SpillwayError } from '../errors.js';
import {
  BatchAttributes,
  BatchHeader,
  batchBaseOffset,
  batchCrcAt,
  batchLengthAt,
  batchRecordCountAt,
} from '../format/batch-header.js';
import { BatchBuilder, decodeRecords, type RecordInput } from '../format/record-batch.js';
import {
  batchBytesMax,
  fetchMaxBytesDefault,
  fetchMaxBytesMax,
  fetchMaxWaitMsMax,
  httpBodyBytesMax,
  httpFetchMessagesMax,
  httpInFlightRequestsMax,
  jsonDepthMax,
  partitionIndexMax,
  queueDelayMsMax,
  queueReceiveMessagesMax,
  topicNameLengthMax,
} from '../limits.js';
import { crc32c } from '../native.js';
import type { Operation, ResourceType } from '../protocol/access-control.js';
import type { BrokerApi } from '../protocol/broker-api.js';
import { delayedRecord, dueTimeOf } from '../protocol/delayed-record.js';
import { integerField, parseCreateTopicOptions, stringField } from '../protocol/messages.js';
import { checkMsgId } from '../protocol/msg-id.js';
import { requireAccess } from '../protocol/opcode-access.js';
import { partitionForKey } from '../protocol/partitioner.js';
import { type NackSettings, queueGroupSummary } from '../protocol/queue-api.js';
import { parseReceipts, parseReceive } from '../protocol/queue-messages.js';
import { msgIdHeader } from '../protocol/reserved-headers.js';
import { adminTopics, createTopicThrough } from '../protocol/topic-admin.js';
import type { QuotaKind } from './auth/principal-quotas.js';
import type { ConnectionSecurity } from './connection.js';
import type { HttpBudget } from './http-budget.js';
import { HttpExchange, type HttpExchangeHooks } from './http-exchange.js';
import { HttpError } from './http-status.js';
import { checkJsonDepth } from './json-depth.js';
import type { ServerMetrics } from './metrics.js';
import { type RequestGuard, requireJsonContentType } from './request-guard.js';

export interface HttpApiContext {
  api: BrokerApi;
  metrics: ServerMetrics;
  isClosing(): boolean;
  /** Registers the work of a request so close() can wait for it. */
  track(work: Promise<unknown>): void;
  exchanges: Set<HttpExchange>;
  onInternalError(error: unknown): void;
  /** Origin and Host checks made before any route runs. */
  guard: RequestGuard;
  /** The receive and send budgets shared by every exchange. */
  budget: HttpBudget;
  /** Authentication and quotas; null without an auth file. */
  security: ConnectionSecurity | null;
  clock: Clock;
}

/** Throws FORBIDDEN unless the exchange's principal (auth on) may do this; nothing with auth off. */
function allow(exchange: HttpExchange, resource: ResourceType, operation: Operation, name = '*'): void {
  const principal = exchange.principal;
  if (principal !== null) requireAccess(principal.access, principal.name, resource, operation, name);
}

/** The token of an `Authorization: Bearer TOKEN` header; undefined when there is none. */
function bearerToken(header: string): string | undefined {
  return /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header)?.[1];
}

type ValueEncoding = 'utf8' | 'base64';

/** Default number of messages of one HTTP receive. */
const httpReceiveMessagesDefault = 100;
/** Default number of messages of one HTTP fetch. */
const fetchMessagesDefault = 100;
const base64Pattern = /^[A-Za-z0-9+/]*={0,2}$/;

function methodNotAllowed(method: string, allowed: string): HttpError {
  return new HttpError(405, 'INVALID_ARGUMENT', `method ${method.toUpperCase()} not allowed here`, {
    headers: { allow: allowed },
  });
}

function parseJson(body: Buffer): unknown {
  if (body.length === 0) throw new InvalidArgumentError('request body is empty: send JSON');
  checkJsonDepth(body, jsonDepthMax);
  try {
    return JSON.parse(body.toString('utf8'));
  } catch (error) {
    throw new InvalidArgumentError(`request body is not valid JSON: ${(error as Error).message}`);
  }
}

function asObject(value: unknown, what: string): Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new InvalidArgumentError(`${what} must be a JSON object`);
  }
  return value as Record<string, unknown>;
}

function decodeParameter(value: string, name: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    throw new InvalidArgumentError(`${name} is not valid percent-encoding`);
  }
}

function parseValueEncoding(value: unknown): ValueEncoding {
  if (value === undefined || value === null || value === 'utf8') return 'utf8';
  if (value === 'base64') return 'base64';
  throw new InvalidArgumentError("valueEncoding must be 'utf8' or 'base64'");
}

function decodeBytes(value: unknown, encoding: ValueEncoding, what: string): string | Uint8Array | null {
  if (value === null) return null;
  if (typeof value !== 'string') throw new InvalidArgumentError(`${what} must be a string or null`);
  if (encoding === 'utf8') return value;
  if (value.length % 4 !== 0 || !base64Pattern.test(value)) {
    throw new InvalidArgumentError(`${what} is not valid base64`);
  }
  return Buffer.from(value, 'base64');
}

function encodeBytes(bytes: Uint8Array | null, encoding: ValueEncoding): string | null {
  if (bytes === null) return null;
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString(encoding);
}

/** An integer from a path or query parameter (decimal digits only). */
function integerParameter(text: string | null, name: string, min: number, max: number, fallback?: number) {
  if ((text === null || text === '') && fallback !== undefined) return fallback;
  if (text === null || !/^\d{1,16}$/.test(text)) {
    throw new InvalidArgumentError(`${name} must be an integer in [${min}, ${max}]`);
  }
  return integerField({ [name]: Number(text) }, name, min, max);
}

interface ProduceMessage {
  record: RecordInput;
  keyBytes: Uint8Array | null;
  partition: number | undefined;
  /** Delayed (delayMs/deliverAt): goes in a batch with the delayed attribute. */
  delayed: boolean;
}

function parseProduceMessage(value: unknown, index: number, encoding: ValueEncoding): ProduceMessage {
  const fields = asObject(value, `messages[${index}]`);
  for (const name of Object.keys(fields)) {
    if (!['key', 'value', 'headers', 'partition', 'msgId', 'delayMs', 'deliverAt'].includes(name)) {
      throw new InvalidArgumentError(`messages[${index}]: unknown field '${name}'`);
    }
  }
  if (!('value' in fields)) throw new InvalidArgumentError(`messages[${index}].value is required`);
  const record: RecordInput = { value: decodeBytes(fields['value'], encoding, `messages[${index}].value`) };
  let keyBytes: Uint8Array | null = null;
  if (fields['key'] !== undefined) {
    const key = decodeBytes(fields['key'], encoding, `messages[${index}].key`);
    record.key = key;
    keyBytes = typeof key === 'string' ? Buffer.from(key, 'utf8') : key;
  }
  if (fields['headers'] !== undefined && fields['headers'] !== null) {
    const headers = asObject(fields['headers'], `messages[${index}].headers`);
    const pairs: Array<[string, string | Uint8Array | null]> = [];
    for (const [name, headerValue] of Object.entries(headers)) {
      pairs.push([name, decodeBytes(headerValue, encoding, `messages[${index}].headers.${name}`)]);
    }
    record.headers = pairs;
  }
  if (fields['msgId'] !== undefined) {
    const msgId = checkMsgId(fields['msgId'], `messages[${index}].msgId`);
    const pairs = (record.headers ?? []) as Array<[string, string | Uint8Array | null]>;
    if (pairs.some(([name]) => name === msgIdHeader)) {
      throw new InvalidArgumentError(
        `messages[${index}] has both msgId and a ${msgIdHeader} header: give one`,
      );
    }
    pairs.push([msgIdHeader, msgId]);
    record.headers = pairs;
  }
  const partition =
    fields['partition'] === undefined ? undefined : integerField(fields, 'partition', 0, partitionIndexMax);
  let dueMs: number | null;
  try {
    const delay = {
      delayMs: fields['delayMs'] as number | undefined,
      deliverAt: fields['deliverAt'] as number | undefined,
    };
    dueMs = dueTimeOf(delay, Date.now());
  } catch (error) {
    throw new InvalidArgumentError(`messages[${index}]: ${(error as Error).message}`);
  }
  if (dueMs === null) return { record, keyBytes, partition, delayed: false };
  return { record: delayedRecord(record, dueMs), keyBytes, partition, delayed: true };
}

export class HttpApi {
  /** Round-robin position for keyless messages without a partition. */
  private nextPartition = 0;
  private readonly hooks: HttpExchangeHooks;

  constructor(private readonly context: HttpApiContext) {
    const { metrics } = context;
    this.hooks = {
      onFinish: (exchange, status) => {
        context.exchanges.delete(exchange);
        if (status !== 0) metrics.countHttpRequest(exchange.route, status);
        // Answered or aborted: the request's session ends (its close hooks run).
        if (exchange.session !== null) context.track(exchange.session.close());
      },
      onBytesReceived: (bytes) => {
        metrics.bytesReceived.http += bytes;
      },
      onBytesSent: (bytes) => {
        metrics.bytesSent.http += bytes;
      },
      onInternalError: (error) => context.onInternalError(error),
    };
  }

  register(app: TemplatedApp, renderMetrics: () => string): void {
    const route = (
      pattern: string,
      name: string,
      handler: (exchange: HttpExchange, request: HttpRequest, method: string) => void,
    ) => {
      app.any(pattern, (response, request) => {
        const exchange = this.begin(response, request, name);
        if (exchange !== undefined) handler(exchange, request, request.getMethod());
      });
    };

    route('/healthz', 'healthz', (exchange, _request, method) => {
      if (method !== 'get') return void exchange.answerError(methodNotAllowed(method, 'GET'));
      exchange.answer({ status: 200, text: 'ok' });
    });
    route('/metrics', 'metrics', (exchange, _request, method) => {
      if (method !== 'get') return void exchange.answerError(methodNotAllowed(method, 'GET'));
      void exchange.run(() => {
        allow(exchange, 'cluster', 'describe');
        return {
          status: 200,
          text: renderMetrics(),
          contentType: 'text/plain; version=0.0.4; charset=utf-8',
        };
      });
    });
    route('/v1/health/details', 'health_details', (exchange, _request, method) => {
      if (method !== 'get') return void exchange.answerError(methodNotAllowed(method, 'GET'));
      // 200 even when degraded: the body says so (`status`), the broker itself is up.
      void exchange.run(() => {
        allow(exchange, 'cluster', 'describe');
        return {
          status: 200,
          json: {
            ...this.context.api.integrity.report(),
            storage: this.context.api.storageStats?.() ?? null,
          },
        };
      });
    });
    route('/v1/topics', 'topics', (exchange, request, method) => {
      if (method === 'get') {
        const query = new URLSearchParams(request.getQuery() ?? '');
        this.track(
          exchange.run(() => {
            allow(exchange, 'cluster', 'describe');
            return { status: 200, json: { topics: this.listTopics(query) } };
          }),
        );
      } else if (method === 'post') {
        const body = this.readJsonBody(exchange, request);
        this.track(exchange.run(async () => this.createTopic(exchange, await body)));
      } else {
        exchange.answerError(methodNotAllowed(method, 'GET, POST'));
      }
    });
    route('/v1/topics/:name', 'topic', (exchange, request, method) => {
      const rawName = request.getParameter(0);
      this.track(
        exchange.run(async () => {
          const name = decodeParameter(rawName, 'topic name');
          if (method === 'get') {
            allow(exchange, 'topic', 'describe', name);
            return { status: 200, json: adminTopics(this.context.api).describe(name) };
          }
          if (method === 'delete') {
            allow(exchange, 'topic', 'admin', name);
            await adminTopics(this.context.api).delete(name);
            return { status: 204 };
          }
          throw methodNotAllowed(method, 'GET, DELETE');
        }),
      );
    });
    route('/v1/topics/:name/messages', 'produce', (exchange, request, method) => {
      if (method !== 'post') return void exchange.answerError(methodNotAllowed(method, 'POST'));
      const rawName = request.getParameter(0);
      const body = this.readJsonBody(exchange, request);
      this.track(
        exchange.run(async () => {
          const topic = decodeParameter(rawName, 'topic name');
          allow(exchange, 'topic', 'produce', topic);
          return this.produce(exchange, topic, await body);
        }),
      );
    });
    route('/v1/topics/:name/partitions/:partition/messages', 'fetch', (exchange, request, method) => {
      if (method !== 'get') return void exchange.answerError(methodNotAllowed(method, 'GET'));
      const rawName = request.getParameter(0);
      const rawPartition = request.getParameter(1);
      const query = new URLSearchParams(request.getQuery() ?? '');
      if (this.context.budget.sendFull) {
        this.context.budget.refusals++;
        return void exchange.answerError(
          new HttpError(
            503,
            'BACKPRESSURE',
            `answers waiting for slow readers hold more than ${this.context.budget.sendMaxBytes} bytes: fetch again later`,
            { retriable: true },
          ),
        );
      }
      this.track(
        exchange.run(() => {
          const topic = decodeParameter(rawName, 'topic name');
          allow(exchange, 'topic', 'consume', topic);
          return this.fetch(exchange, topic, rawPartition, query);
        }),
      );
    });
    route('/v1/sessions', 'sessions', (exchange, _request, method) => {
      if (method !== 'get') return void exchange.answerError(methodNotAllowed(method, 'GET'));
      void exchange.run(() => {
        allow(exchange, 'cluster', 'describe');
        return { status: 200, json: { sessions: this.context.api.sessions.list() } };
      });
    });
    route('/v1/transactions', 'transactions', (exchange, _request, method) => {
      if (method !== 'get') return void exchange.answerError(methodNotAllowed(method, 'GET'));
      const api = this.context.api;
      void exchange.run(() => {
        allow(exchange, 'cluster', 'describe');
        return {
          status: 200,
          json: { transactions: api.transactions.list(), stats: api.transactions.stats() },
        };
      });
    });
    route('/v1/delay/stats', 'delay_stats', (exchange, _request, method) => {
      if (method !== 'get') return void exchange.answerError(methodNotAllowed(method, 'GET'));
      const delay = this.context.api.delay;
      void exchange.run(() => {
        allow(exchange, 'cluster', 'describe');
        if (delay === undefined)
          throw new SpillwayError('UNKNOWN_OPCODE', 'this broker has no delay service');
        return { status: 200, json: delay.stats() };
      });
    });
    route('/v1/groups', 'groups_list', (exchange, _request, method) => {
      if (method !== 'get') return void exchange.answerError(methodNotAllowed(method, 'GET'));
      const api = this.context.api;
      void exchange.run(() => {
        allow(exchange, 'cluster', 'describe');
        return {
          status: 200,
          json: { groups: [...api.groups.list(), ...api.queues.describe().map(queueGroupSummary)] },
        };
      });
    });
    route('/v1/groups/:group', 'group', (exchange, request, method) => {
      if (method !== 'get') return void exchange.answerError(methodNotAllowed(method, 'GET'));
      const rawName = request.getParameter(0);
      void exchange.run(() => ({
        status: 200,
        json: this.describeGroup(exchange, decodeParameter(rawName, 'group name')),
      }));
    });
    route('/v1/groups/:group/:action', 'queue', (exchange, request, method) => {
      const rawGroup = request.getParameter(0);
      const action = request.getParameter(1);
      if (action !== 'receive' && action !== 'ack' && action !== 'nack') {
        return void exchange.answerError(
          new HttpError(404, 'INVALID_ARGUMENT', `no route ${method.toUpperCase()} ${request.getUrl()}`),
        );
      }
      if (method !== 'post') return void exchange.answerError(methodNotAllowed(method, 'POST'));
      const body = this.readJsonBody(exchange, request);
      this.track(
        exchange.run(async () => {
          const group = decodeParameter(rawGroup, 'group');
          allow(exchange, 'group', 'consume', group);
          const fields = asObject(parseJson(await body), 'request body');
          if (action === 'receive') return this.receive(group, fields, exchange);
          return this.settle(group, action, fields);
        }),
      );
    });
    route('/*', 'unknown', (exchange, request, method) => {
      exchange.answerError(
        new HttpError(404, 'INVALID_ARGUMENT', `no route ${method.toUpperCase()} ${request.getUrl()}`),
      );
    });
  }

  /** Starts an exchange, or answers at once (server closing: 503; too many requests: 429). */
  private begin(response: HttpResponse, request: HttpRequest, route: string): HttpExchange | undefined {
    const { context } = this;
    const exchange = new HttpExchange(response, route, this.hooks, context.budget);
    const refusal = context.guard.check(request.getHeader('origin'), request.getHeader('host'));
    if (refusal !== null) {
      context.metrics.requestsRefusedByGuard++;
      exchange.answerError(refusal);
      return undefined;
    }
    if (context.isClosing()) {
      exchange.answerError(
        new HttpError(503, 'BROKER_CLOSING', 'the broker is shutting down', {
          headers: { connection: 'close' },
        }),
      );
      return undefined;
    }
    if (context.exchanges.size >= httpInFlightRequestsMax) {
      exchange.answerError(
        new HttpError(429, 'TOO_MANY_REQUESTS', `more than ${httpInFlightRequestsMax} HTTP requests at once`),
      );
      return undefined;
    }
    try {
      exchange.session = context.api.sessions.open({ kind: 'http', transport: null });
    } catch (error) {
      exchange.answerError(error);
      return undefined;
    }
    const security = context.security;
    if (security !== null && route !== 'healthz') {
      const token = bearerToken(request.getHeader('authorization'));
      const address = Buffer.from(response.getRemoteAddressAsText()).toString();
      exchange.authenticated = security.authenticator.authenticate(token, address).then(
        (principal) => {
          exchange.principal = principal;
          exchange.session?.authenticate(principal);
        },
        (error: unknown) => {
          if (error instanceof SpillwayError && error.code === 'UNAUTHENTICATED') {
            throw new HttpError(
              401,
              'UNAUTHENTICATED',
              `${error.message}: send Authorization: Bearer TOKEN`,
              {
                headers: { 'www-authenticate': 'Bearer realm="spillway"' },
              },
            );
          }
          throw error;
        },
      );
    }
    context.exchanges.add(exchange);
    return exchange;
  }

  /**
   * The body of a request that must be JSON: refused (415) before it is read unless its content type
   * is application/json, so a cross-site HTML form cannot send one.
   */
  private readJsonBody(exchange: HttpExchange, request: HttpRequest): Promise<Buffer> {
    try {
      requireJsonContentType(request.getHeader('content-type'));
    } catch (error) {
      const refused = Promise.reject(error);
      refused.catch(() => undefined); // answered by exchange.run, which awaits it
      return refused;
    }
    return exchange.readBody(request.getHeader('content-length'), httpBodyBytesMax);
  }

  private track(work: Promise<void>): void {
    this.context.track(work);
  }

  /** Charges `bytes` to the principal's quota (auth on) and waits the delay it asks for. */
  private async throttle(exchange: HttpExchange, kind: QuotaKind, bytes: number): Promise<void> {
    const { security, clock } = this.context;
    const principal = exchange.principal;
    if (security === null || principal === null) return;
    const delayMs = security.quotas.charge(principal.name, principal.quotas, kind, bytes);
    if (delayMs <= 0) return;
    const signal = exchange.abortController.signal;
    await new Promise<void>((resolve) => {
      const timer = clock.setTimeout(() => {
        signal.removeEventListener('abort', stop);
        resolve();
      }, delayMs);
      const stop = () => {
        timer.cancel();
        resolve();
      };
      signal.addEventListener('abort', stop, { once: true });
    });
  }

  private async createTopic(exchange: HttpExchange, body: Buffer) {
    const fields = asObject(parseJson(body), 'request body');
    const name = stringField(fields, 'name', topicNameLengthMax);
    allow(exchange, 'topic', 'admin', name);
    const { name: _name, ...config } = fields;
    const description = await createTopicThrough(this.context.api, name, parseCreateTopicOptions(config));
    return { status: 201, json: description };
  }

  private async produce(exchange: HttpExchange, topic: string, body: Buffer) {
    const fields = asObject(parseJson(body), 'request body');
    for (const name of Object.keys(fields)) {
      if (name !== 'messages' && name !== 'valueEncoding') {
        throw new InvalidArgumentError(`unknown field '${name}'`);
      }
    }
    const encoding = parseValueEncoding(fields['valueEncoding']);
    const messages = fields['messages'];
    if (!Array.isArray(messages) || messages.length === 0) {
      throw new InvalidArgumentError('messages must be a non-empty array');
    }
    const parsed = messages.map((message, index) => parseProduceMessage(message, index, encoding));
    const partitionCount = this.context.api.topics.describe(topic).partitionCount;

    // Group by partition and delayed or not (one batch each; key: partition * 2 + 1 when delayed),
    // keeping input order within each group (offsets follow it).
    const byPartition = new Map<number, number[]>();
    const partitions = parsed.map((message, index) => {
      let partition: number;
      if (message.partition !== undefined) {
        if (message.partition >= partitionCount) {
          throw new InvalidArgumentError(
            `messages[${index}].partition ${message.partition} does not exist: topic '${topic}' has ${partitionCount}`,
          );
        }
        partition = message.partition;
      } else if (message.keyBytes !== null) {
        partition = partitionForKey(message.keyBytes, partitionCount);
      } else {
        partition = this.nextPartition++ % partitionCount;
        if (this.nextPartition >= 0x7fffffff) this.nextPartition = 0;
      }
      const group = partition * 2 + (message.delayed ? 1 : 0);
      let indexes = byPartition.get(group);
      if (indexes === undefined) {
        indexes = [];
        byPartition.set(group, indexes);
      }
      indexes.push(index);
      return group;
    });

    const builder = new BatchBuilder();
    const batches: Array<[number, Uint8Array]> = [];
    for (const [group, indexes] of byPartition) {
      const partition = group >> 1;
      builder.reset();
      for (const index of indexes) {
        if (!builder.append(parsed[index]!.record)) {
          throw new HttpError(
            413,
            'INVALID_ARGUMENT',
            `the messages for partition ${partition} do not fit one batch of ${batchBytesMax} bytes: send fewer at a time`,
          );
        }
      }
      const attributes = group & 1 ? BatchAttributes.delayed : 0;
      batches.push([group, builder.finishCopy({ crc32c, attributes })]);
    }
    // Partitions are written independently: on an error, some partitions may have been written.
    const results = await Promise.all(
      batches.map(([group, batch]) => this.context.api.messages.produce(topic, group >> 1, batch)),
    );
    await this.throttle(
      exchange,
      'produce',
      batches.reduce((sum, [, batch]) => sum + batch.length, 0),
    );
    const byGroup = new Map(results.map((result, index) => [batches[index]![0], result]));
    const positionInBatch = new Map<number, number>();
    // A delayed message's offset is where it waits in `__delay` (docs/PROTOCOL.md, "Delayed messages").
    const offsets = partitions.map((group) => {
      const position = positionInBatch.get(group) ?? 0;
      positionInBatch.set(group, position + 1);
      const result = byGroup.get(group)!;
      // A msgId duplicate (dedup topics) is answered with its first copy's partition and offset.
      if (result.recordOffsets !== undefined && result.recordPartitions !== undefined) {
        return { partition: result.recordPartitions[position]!, offset: result.recordOffsets[position]! };
      }
      const offset = result.baseOffset + position;
      return group & 1 ? { partition: group >> 1, offset, delayed: true } : { partition: group >> 1, offset };
    });
    return { status: 200, json: { offsets } };
  }

  /** POST /v1/groups/G/receive {"topic","max","waitMs", ...}: shared-mode messages with receipts. */
  private async receive(group: string, fields: Record<string, unknown>, exchange: HttpExchange) {
    const known = new Set([
      'topic',
      'max',
      'waitMs',
      'valueEncoding',
      'ackTimeoutMs',
      'maxDeliveries',
      'retryBackoffMs',
      'deadLetterTopic',
    ]);
    for (const name of Object.keys(fields)) {
      if (!known.has(name)) throw new InvalidArgumentError(`unknown field '${name}'`);
    }
    const encoding = parseValueEncoding(fields['valueEncoding']);
    const request = parseReceive({
      ...fields,
      group,
      mode: 'shared',
      max: fields['max'] ?? httpReceiveMessagesDefault,
      waitMs: fields['waitMs'] ?? 0,
    });
    request.max = integerField({ max: request.max }, 'max', 1, queueReceiveMessagesMax);
    request.waitMs = integerField({ waitMs: request.waitMs }, 'waitMs', 0, fetchMaxWaitMsMax);
    request.signal = exchange.abortController.signal;
    allow(exchange, 'topic', 'consume', request.topic);
    if (request.deadLetterTopic !== undefined) allow(exchange, 'topic', 'produce', request.deadLetterTopic);
    const session = exchange.session;
    if (session === null) throw new InvalidArgumentError('no session');
    const result = await this.context.api.queues.receive(session, request);
    let receivedBytes = 0;
    for (const received of result.partitions) {
      for (const records of received.records) receivedBytes += records.length;
    }
    await this.throttle(exchange, 'fetch', receivedBytes);
    const messages: unknown[] = [];
    for (const received of result.partitions) {
      const byOffset = new Map(received.offsets.map((offset, index) => [offset, index]));
      for (const records of received.records) {
        for (const record of decodeRecords(records, 0)) {
          const index = byOffset.get(record.offset);
          if (index === undefined) continue;
          byOffset.delete(record.offset);
          const headers: Record<string, string | null> = {};
          for (const [name, value] of record.headers) headers[name] = encodeBytes(value, encoding);
          messages.push({
            topic: result.topic,
            partition: received.partition,
            offset: record.offset,
            timestamp: record.timestamp,
            key: encodeBytes(record.key, encoding),
            value: encodeBytes(record.value, encoding),
            headers,
            deliveryCount: received.deliveryCounts[index],
            receipt: this.context.api.queues.receipt(
              group,
              received.partition,
              record.offset,
              received.leases[index]!,
            ),
          });
        }
      }
    }
    return { status: 200, json: { messages } };
  }

  /** POST /v1/groups/G/ack {"receipts"} and /nack {"receipts","delayMs"?,"error"?}. */
  private async settle(group: string, action: 'ack' | 'nack', fields: Record<string, unknown>) {
    const known = action === 'ack' ? ['receipts'] : ['receipts', 'delayMs', 'error'];
    for (const name of Object.keys(fields)) {
      if (!known.includes(name)) throw new InvalidArgumentError(`unknown field '${name}'`);
    }
    const receipts = parseReceipts(fields);
    if (receipts === null) throw new InvalidArgumentError('receipts is required');
    const queues = this.context.api.queues;
    if (action === 'ack') return { status: 200, json: await queues.ackReceipts(group, receipts) };
    const settings: NackSettings = {};
    if (fields['delayMs'] !== undefined)
      settings.delayMs = integerField(fields, 'delayMs', 0, queueDelayMsMax);
    if (fields['error'] !== undefined) {
      if (typeof fields['error'] !== 'string') throw new InvalidArgumentError('error must be a string');
      settings.error = fields['error'];
    }
    return { status: 200, json: await queues.nackReceipts(group, receipts, settings) };
  }

  /** GET /v1/groups/G: the coordinator's description, or the group's queues (shared, key_shared). */
  private describeGroup(exchange: HttpExchange, group: string) {
    allow(exchange, 'group', 'describe', group);
    const api = this.context.api;
    try {
      return api.groups.describe(group);
    } catch (error) {
      if (!(error instanceof SpillwayError) || error.code !== 'UNKNOWN_GROUP') throw error;
      const queues = api.queues.describe(group);
      if (queues.length === 0) throw error;
      return { group, mode: queues[0]!.mode, queues };
    }
  }

  /** GET /v1/topics[?internal=true|false]. */
  private listTopics(query: URLSearchParams) {
    for (const name of query.keys()) {
      if (name !== 'internal') throw new InvalidArgumentError(`unknown query parameter '${name}'`);
    }
    const internal = query.get('internal');
    if (internal !== null && internal !== 'true' && internal !== 'false') {
      throw new InvalidArgumentError(`internal must be true or false, got '${internal}'`);
    }
    return adminTopics(this.context.api).list({ internal: internal === 'true' });
  }

  private async fetch(exchange: HttpExchange, topic: string, rawPartition: string, query: URLSearchParams) {
    const abort = exchange.abortController;
    const partition = integerParameter(rawPartition, 'partition', 0, partitionIndexMax);
    const known = new Set(['offset', 'maxMessages', 'maxWaitMs', 'maxBytes', 'valueEncoding']);
    for (const name of query.keys()) {
      if (!known.has(name)) throw new InvalidArgumentError(`unknown query parameter '${name}'`);
    }
    const maxMessages = integerParameter(
      query.get('maxMessages'),
      'maxMessages',
      1,
      httpFetchMessagesMax,
      fetchMessagesDefault,
    );
    const maxWaitMs = integerParameter(query.get('maxWaitMs'), 'maxWaitMs', 0, fetchMaxWaitMsMax, 0);
    const maxBytes = integerParameter(
      query.get('maxBytes'),
      'maxBytes',
      1,
      fetchMaxBytesMax, // the broker's bound for every fetch (WebSocket and HTTP alike)
      fetchMaxBytesDefault,
    );
    const encoding = parseValueEncoding(query.get('valueEncoding') ?? undefined);
    const offsetText = query.get('offset');
    const api = this.context.api;
    let offset: number;
    if (offsetText === null || offsetText === '' || offsetText === 'earliest') {
      offset = api.messages.listOffset(topic, partition, 'earliest');
    } else if (offsetText === 'latest') {
      offset = api.messages.listOffset(topic, partition, 'latest');
    } else {
      offset = integerParameter(offsetText, 'offset', 0, Number.MAX_SAFE_INTEGER);
    }

    const result = await api.messages.fetch(topic, partition, offset, {
      maxBytes,
      maxWaitMs,
      signal: abort.signal,
    });
    const records = result.records;
    await this.throttle(exchange, 'fetch', records.length);
    const messages: unknown[] = [];
    let nextOffset = result.nextOffset;
    let position = 0;
    batches: while (position < records.length) {
      // Every batch's CRC32C is checked before its bytes are decoded: damaged data on disk is never
      // served. Messages before the damaged batch are answered; it is the error of the next fetch.
      const batchLength = batchLengthAt(records, position);
      const baseOffset = batchBaseOffset(records, position);
      const crcStart = position + BatchHeader.crcStart;
      const intact =
        batchLength >= BatchHeader.size &&
        batchLength <= records.length - position &&
        crc32c(records, 0, crcStart, position + batchLength) >>> 0 === batchCrcAt(records, position);
      if (!intact) {
        if (messages.length > 0) {
          nextOffset = Math.max(offset, baseOffset);
          break;
        }
        const batchEnd = baseOffset + batchRecordCountAt(records, position);
        throw new CorruptStoredBatchError(topic, partition, baseOffset, batchEnd, 'CRC32C mismatch');
      }
      for (const record of decodeRecords(records, position)) {
        if (record.offset < offset) continue;
        if (messages.length === maxMessages) {
          nextOffset = record.offset;
          break batches;
        }
        const headers: Record<string, string | null> = {};
        for (const [name, value] of record.headers) headers[name] = encodeBytes(value, encoding);
        messages.push({
          offset: record.offset,
          timestamp: record.timestamp,
          key: encodeBytes(record.key, encoding),
          value: encodeBytes(record.value, encoding),
          headers,
        });
      }
      position += batchLength;
    }
    return {
      status: 200,
      json: {
        messages,
        nextOffset,
        logStartOffset: result.logStartOffset,
        highWatermark: result.highWatermark,
      },
    };
  }
}
