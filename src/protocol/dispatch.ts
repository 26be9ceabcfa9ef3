/**
 * Answers one request frame by calling the broker: the single request handler behind both the
 * WebSocket server and the client's in-process transport, so both behave the same.
 * Never throws: every failure becomes an error frame with a stable code (docs/PROTOCOL.md).
 * An unexpected exception becomes INTERNAL and is reported through `onInternalError`.
 *
 * Every request runs with the session of its connection (protocol/session.ts); HELLO negotiates
 * the session's protocol version and records its client id. Only client requests come here (flags
 * 0): answers to server requests go to the session (`receiveResponse`) before dispatch.
 * The options object is the connection's, reused for each request (nothing allocated per request).
 */
import { InvalidBatchError, SpillwayError } from '../errors.js';
import { BatchHeader } from '../format/batch-header.js';
import { readInt64LE } from '../format/int64.js';
import { frameBytesMax, inFlightRequestsPerConnectionMax, serviceProducerIdMin } from '../limits.js';
import type { BrokerApi, FetchOptions, FetchResult } from './broker-api.js';
import { parseMetadataRequest, singleBrokerMetadata } from './cluster-metadata-api.js';
import {
  parseDelaySchedule,
  parseDelayScheduleCommitted,
  parseForwardProduce,
  parseForwardScan,
} from './forwarding-messages.js';
import { type Frame, FrameFlags } from './frame.js';
import {
  parseCommitOffsets,
  parseGroupFetch,
  parseGroupName,
  parseHeartbeat,
  parseJoinGroup,
  parseMemberRequest,
  parseReleasePartitions,
} from './group-messages.js';
import {
  type ErrorHeader,
  type FetchResponse,
  type HelloResponse,
  parseAddPartitions,
  parseCreateTopic,
  parseFetch,
  parseHello,
  parseListOffset,
  parseListTopics,
  parseProduce,
  parseRepairPartition,
  parseTopicName,
} from './messages.js';
import { authorize } from './opcode-access.js';
import {
  negotiateProtocolVersion,
  Opcode,
  opcodeName,
  protocolVersion,
  protocolVersionMin,
} from './opcodes.js';
import { parseInitProducer } from './producer-api.js';
import {
  parseAck,
  parseDescribeQueues,
  parseNack,
  parseReceive,
  type ReceiveResponsePartition,
} from './queue-messages.js';
import type { ReplicaFetchResult } from './replication-api.js';
import { parseOffsetForLeaderEpoch, parseProduceOptions, parseReplicaFetch } from './replication-messages.js';
import type { Principal, SessionEndpoint } from './session.js';
import { adminTopics, createTopicThrough } from './topic-admin.js';
import {
  parseTransactionBegin,
  parseTransactionEnd,
  parseTransactionIds,
  parseTransactionRegister,
  parseTransactionSend,
} from './transaction-messages.js';

/**
 * Authentication of a network front end (docs/SECURITY.md). Absent: nothing is checked (the
 * in-process transport, whose sessions carry internalPrincipal; a broker without --auth-file).
 */
export interface DispatchSecurity {
  /**
   * Checks a HELLO's token and resolves with its principal; rejects UNAUTHENTICATED (no token, an
   * unknown or wrong one) or TOO_MANY_REQUESTS (too many failed attempts from the client's address).
   */
  authenticate(token: string | undefined, session: SessionEndpoint): Promise<Principal>;
}

export interface DispatchOptions {
  /** The session of the connection the request came on. */
  session: SessionEndpoint;
  /** Aborted when the connection closes or the server shuts down: ends long-polls early. */
  signal?: AbortSignal;
  brokerVersion: string;
  onInternalError?: (error: unknown, request: Frame) => void;
  /** Present when authentication is on: HELLO must authenticate, then the access table applies. */
  security?: DispatchSecurity;
}

const emptyBody = new Uint8Array(0);
/** Flags a client request must not have. */
const requestFlagsMask = FrameFlags.response | FrameFlags.error | FrameFlags.serverRequest;

function response(request: Frame, header: unknown, body: Uint8Array = emptyBody): Frame {
  return {
    opcode: request.opcode,
    flags: FrameFlags.response,
    correlationId: request.correlationId,
    header,
    body,
  };
}

/** An error answer to the request with this opcode and correlation id. */
export function errorFrame(opcode: number, correlationId: number, error: SpillwayError): Frame {
  const header: ErrorHeader = { code: error.code, message: error.message, retriable: error.retriable };
  return { opcode, flags: FrameFlags.response | FrameFlags.error, correlationId, header, body: emptyBody };
}

/** The fetch options of a FETCH or GROUP_FETCH request, with the connection's abort signal. */
function fetchOptions(
  fetch: { maxBytes: number; maxWaitMs: number; minBytes: number },
  options: DispatchOptions,
): FetchOptions {
  return {
    maxBytes: fetch.maxBytes,
    maxWaitMs: fetch.maxWaitMs,
    minBytes: fetch.minBytes,
    ...(options.signal ? { signal: options.signal } : {}),
  };
}

/** The answer of a FETCH or GROUP_FETCH: the fetch figures as header, the batches as body. */
function fetchAnswer(request: Frame, result: FetchResult): Frame {
  const header: FetchResponse = {
    batchCount: result.batchCount,
    firstOffset: result.firstOffset,
    nextOffset: result.nextOffset,
    logStartOffset: result.logStartOffset,
    highWatermark: result.highWatermark,
  };
  return response(request, header, result.records);
}

export async function dispatch(api: BrokerApi, request: Frame, options: DispatchOptions): Promise<Frame> {
  try {
    if ((request.flags & requestFlagsMask) !== 0) {
      throw new SpillwayError(
        'PROTOCOL_ERROR',
        (request.flags & FrameFlags.serverRequest) !== 0
          ? 'the serverRequest flag is only for answers to server requests'
          : 'a client may only send requests (flags 0) here',
      );
    }
    if (options.security !== undefined && request.opcode !== Opcode.hello) {
      const principal = options.session.principal;
      if (principal === null) {
        throw new SpillwayError('UNAUTHENTICATED', 'say HELLO with a token first: this broker requires one');
      }
      authorize(principal.access, principal.name, request.opcode, request.header);
    }
    // A cluster broker refuses the requests of services it does not run (NOT_COORDINATOR).
    api.coordinators?.check(request.opcode);
    return await answer(api, request, options);
  } catch (error) {
    if (error instanceof SpillwayError) return errorFrame(request.opcode, request.correlationId, error);
    options.onInternalError?.(error, request);
    return errorFrame(
      request.opcode,
      request.correlationId,
      new SpillwayError(
        'INTERNAL',
        `internal error: ${error instanceof Error ? error.message : String(error)}`,
      ),
    );
  }
}

function requireNoBody(request: Frame): void {
  if (request.body.length !== 0) {
    throw new SpillwayError('PROTOCOL_ERROR', `${opcodeName(request.opcode)} takes no body`);
  }
}

async function answer(api: BrokerApi, request: Frame, options: DispatchOptions): Promise<Frame> {
  switch (request.opcode) {
    case Opcode.hello: {
      requireNoBody(request);
      const hello = parseHello(request.header);
      const clientMax = hello.protocolVersionMax ?? hello.protocolVersion;
      const chosen = negotiateProtocolVersion(hello.protocolVersion, clientMax);
      if (chosen === null) {
        throw new SpillwayError(
          'UNSUPPORTED_VERSION',
          `protocol versions ${hello.protocolVersion}..${clientMax} are not supported; this broker speaks ${protocolVersionMin}..${protocolVersion}`,
        );
      }
      if (options.security !== undefined) {
        options.session.authenticate(await options.security.authenticate(hello.token, options.session));
      }
      options.session.identify(hello.clientId ?? null, chosen);
      const header: HelloResponse = {
        protocolVersion: chosen,
        brokerVersion: options.brokerVersion,
        frameBytesMax,
        inFlightRequestsMax: inFlightRequestsPerConnectionMax,
        sessionId: options.session.id,
      };
      if (options.security !== undefined) header.principal = options.session.principal!.name;
      return response(request, header);
    }
    case Opcode.createTopic: {
      requireNoBody(request);
      const { name, config } = parseCreateTopic(request.header);
      return response(request, await createTopicThrough(api, name, config));
    }
    case Opcode.deleteTopic: {
      requireNoBody(request);
      await adminTopics(api).delete(parseTopicName(request.header).name);
      return response(request, {});
    }
    case Opcode.listTopics:
      requireNoBody(request);
      return response(request, { topics: adminTopics(api).list(parseListTopics(request.header)) });
    case Opcode.describeTopic:
      requireNoBody(request);
      return response(request, adminTopics(api).describe(parseTopicName(request.header).name));
    case Opcode.addPartitions: {
      requireNoBody(request);
      const { name, count } = parseAddPartitions(request.header);
      return response(request, await adminTopics(api).addPartitions(name, count));
    }
    case Opcode.produce: {
      const { topic, partition } = parseProduce(request.header);
      const produceOptions = parseProduceOptions(request.header);
      if (api.forwarding !== undefined) refuseServiceProducerId(request.body);
      return response(request, await api.messages.produce(topic, partition, request.body, produceOptions));
    }
    case Opcode.fetch: {
      requireNoBody(request);
      const fetch = parseFetch(request.header);
      const result = await api.messages.fetch(
        fetch.topic,
        fetch.partition,
        fetch.offset,
        fetchOptions(fetch, options),
      );
      return fetchAnswer(request, result);
    }
    case Opcode.listOffset: {
      requireNoBody(request);
      const { topic, partition, spec } = parseListOffset(request.header);
      return response(request, { offset: api.messages.listOffset(topic, partition, spec) });
    }
    case Opcode.initProducer:
      requireNoBody(request);
      return response(request, await api.producers.initProducer(parseInitProducer(request.header)));
    case Opcode.integrityReport:
      requireNoBody(request);
      return response(request, api.integrity.report());
    case Opcode.repairPartition: {
      requireNoBody(request);
      const { topic, partition } = parseRepairPartition(request.header);
      return response(request, await api.integrity.repair(topic, partition));
    }
    case Opcode.joinGroup:
      requireNoBody(request);
      return response(request, await api.groups.join(options.session, parseJoinGroup(request.header)));
    case Opcode.heartbeat:
      requireNoBody(request);
      return response(
        request,
        await api.groups.heartbeat(options.session, parseHeartbeat(request.header), options.signal),
      );
    case Opcode.leaveGroup:
      requireNoBody(request);
      await api.groups.leave(options.session, parseMemberRequest(request.header));
      return response(request, {});
    case Opcode.releasePartitions:
      requireNoBody(request);
      return response(
        request,
        await api.groups.release(options.session, parseReleasePartitions(request.header)),
      );
    case Opcode.commitOffsets:
      requireNoBody(request);
      await api.groups.commit(options.session, parseCommitOffsets(request.header));
      return response(request, {});
    case Opcode.groupFetch: {
      requireNoBody(request);
      const fetch = parseGroupFetch(request.header);
      return fetchAnswer(
        request,
        await api.groups.fetch(options.session, fetch, fetchOptions(fetch, options)),
      );
    }
    case Opcode.delayStats:
      requireNoBody(request);
      if (api.delay === undefined) {
        throw new SpillwayError('UNKNOWN_OPCODE', 'DELAY_STATS (26): this broker has no delay service');
      }
      return response(request, api.delay.stats());
    case Opcode.metadata: {
      requireNoBody(request);
      const { topics } = parseMetadataRequest(request.header);
      return response(request, api.clusterMetadata?.metadata(topics) ?? singleBrokerMetadata());
    }
    case Opcode.listGroups:
      requireNoBody(request);
      return response(request, { groups: api.groups.list() });
    case Opcode.describeGroup:
      requireNoBody(request);
      return response(request, api.groups.describe(parseGroupName(request.header).group));
    case Opcode.queueReceive: {
      requireNoBody(request);
      const receive = parseReceive(request.header);
      if (options.signal) receive.signal = options.signal;
      const result = await api.queues.receive(options.session, receive);
      const partitions: ReceiveResponsePartition[] = [];
      const chunks: Uint8Array[] = [];
      let total = 0;
      for (const received of result.partitions) {
        let bytes = 0;
        for (const records of received.records) {
          chunks.push(records);
          bytes += records.length;
        }
        total += bytes;
        const { offsets, deliveryCounts } = received;
        const deliveries: number[] = new Array(offsets.length * 2);
        for (let i = 0; i < offsets.length; i++) {
          deliveries[i * 2] = offsets[i]!;
          deliveries[i * 2 + 1] = deliveryCounts[i]!;
        }
        partitions.push({ partition: received.partition, bytes, deliveries });
      }
      let body: Uint8Array = emptyBody;
      if (chunks.length === 1) body = chunks[0]!;
      else if (chunks.length > 1) body = Buffer.concat(chunks, total);
      return response(request, { partitions }, body);
    }
    case Opcode.queueAck: {
      requireNoBody(request);
      const ack = parseAck(request.header);
      if ('receipts' in ack) return response(request, await api.queues.ackReceipts(ack.group, ack.receipts));
      return response(request, await api.queues.ack(ack.group, ack.topic, ack.partitions));
    }
    case Opcode.queueNack: {
      requireNoBody(request);
      const nack = parseNack(request.header);
      const settings = {
        ...(nack.delayMs !== undefined ? { delayMs: nack.delayMs } : {}),
        ...(nack.error !== undefined ? { error: nack.error } : {}),
      };
      if ('receipts' in nack) {
        return response(request, await api.queues.nackReceipts(nack.group, nack.receipts, settings));
      }
      return response(request, await api.queues.nack(nack.group, nack.topic, nack.partitions, settings));
    }
    case Opcode.queueDescribe: {
      requireNoBody(request);
      const { group } = parseDescribeQueues(request.header);
      return response(request, { groups: api.queues.describe(group) });
    }
    case Opcode.txnBegin:
      requireNoBody(request);
      return response(
        request,
        await api.transactions.begin(options.session, parseTransactionBegin(request.header)),
      );
    case Opcode.txnSend: {
      const send = parseTransactionSend(request.header);
      if (send.begin !== null) api.transactions.beginLeased(options.session, send.id, send.begin);
      checkTransactionGroup(api, send.id, send.group);
      if (send.single) {
        const part = send.parts[0]!;
        return response(
          request,
          await api.transactions.send(
            options.session,
            send.id,
            part.topic,
            part.partition,
            request.body,
            send.seq,
          ),
        );
      }
      return response(
        request,
        await api.transactions.sendMany(options.session, send.id, send.parts, request.body, send.seq),
      );
    }
    case Opcode.txnEnd: {
      requireNoBody(request);
      const { id, decision, group, begin } = parseTransactionEnd(request.header);
      if (begin !== null) api.transactions.beginLeased(options.session, id, begin);
      checkTransactionGroup(api, id, group);
      return response(request, await api.transactions.end(options.session, id, decision));
    }
    case Opcode.txnIds: {
      requireNoBody(request);
      const { group, count } = parseTransactionIds(request.header);
      return response(request, await api.transactions.reserveIds(options.session, group, count));
    }
    case Opcode.txnList:
      requireNoBody(request);
      return response(request, { transactions: api.transactions.list(), stats: api.transactions.stats() });
    case Opcode.txnRegister:
      requireNoBody(request);
      api.transactions.register(options.session, parseTransactionRegister(request.header).group);
      return response(request, {});
    case Opcode.replicaFetch: {
      requireNoBody(request);
      const replication = replicationOf(api, 'REPLICA_FETCH (80)');
      const result: ReplicaFetchResult = await replication.replicaFetch(
        parseReplicaFetch(request.header),
        options.signal,
      );
      const { records, ...header } = result;
      return response(request, header, records);
    }
    case Opcode.offsetForLeaderEpoch:
      requireNoBody(request);
      return response(
        request,
        replicationOf(api, 'OFFSET_FOR_LEADER_EPOCH (81)').offsetForLeaderEpoch(
          parseOffsetForLeaderEpoch(request.header),
        ),
      );
    case Opcode.forwardProduce: {
      const forwarding = forwardingOf(api, 'FORWARD_PRODUCE (75)');
      // Copied: the server lends the received body, and the answer waits for the in-sync replicas.
      const result = await forwarding.forwardProduce(
        parseForwardProduce(request.header),
        request.body.slice(),
      );
      return response(request, result);
    }
    case Opcode.delaySchedule: {
      const forwarding = forwardingOf(api, 'DELAY_SCHEDULE (77)');
      // Copied: the server lends the received body, and the delay service keeps the batch.
      const result = await forwarding.delaySchedule(parseDelaySchedule(request.header), request.body.slice());
      return response(request, result);
    }
    case Opcode.delayScheduleCommitted: {
      const forwarding = forwardingOf(api, 'DELAY_SCHEDULE_COMMITTED (73)');
      // Copied: the server lends the received body, and the delay service keeps the batch.
      const result = await forwarding.delayScheduleCommitted(
        parseDelayScheduleCommitted(request.header),
        request.body.slice(),
      );
      return response(request, result);
    }
    case Opcode.forwardScan: {
      requireNoBody(request);
      const { batches, ...header } = await forwardingOf(api, 'FORWARD_SCAN (76)').forwardScan(
        parseForwardScan(request.header),
      );
      return response(request, header, batches);
    }
    case Opcode.ping:
      throw new SpillwayError('UNKNOWN_OPCODE', 'PING (64) is a request the server sends, not a client');
    case Opcode.txnCheck:
      throw new SpillwayError('UNKNOWN_OPCODE', 'TXN_CHECK (65) is a request the server sends, not a client');
    default:
      throw new SpillwayError('UNKNOWN_OPCODE', `unknown opcode ${request.opcode}`);
  }
}

/**
 * In a cluster: a client batch naming a producer id of the brokers' own services (forwarding) is
 * refused, so that no client can write under (or fence) a service's forwards.
 */
function refuseServiceProducerId(batch: Uint8Array): void {
  if (batch.length < BatchHeader.size) return; // the produce path reports what is wrong with it
  const producerId = readInt64LE(batch, BatchHeader.producerId);
  if (producerId >= serviceProducerIdMin) {
    throw new InvalidBatchError(
      `producer id ${producerId} is reserved for the brokers' services (forwarding): a client uses the id INIT_PRODUCER gives`,
    );
  }
}

/** The broker's forwarding service; UNKNOWN_OPCODE on a broker outside a cluster. */
function forwardingOf(api: BrokerApi, what: string): NonNullable<BrokerApi['forwarding']> {
  if (api.forwarding === undefined) {
    throw new SpillwayError('UNKNOWN_OPCODE', `${what}: this broker forwards nothing (no cluster)`);
  }
  return api.forwarding;
}

/** The broker's replication service; UNKNOWN_OPCODE on a broker without replication. */
function replicationOf(api: BrokerApi, what: string): NonNullable<BrokerApi['replication']> {
  if (api.replication === undefined) {
    throw new SpillwayError('UNKNOWN_OPCODE', `${what}: this broker does not replicate (no cluster)`);
  }
  return api.replication;
}

/**
 * A TXN_SEND / TXN_END naming a producer group acts only on that group's transactions: with
 * authentication on, the principal's produce right on the group is what lets it decide them.
 */
function checkTransactionGroup(api: BrokerApi, id: number, group: string | null): void {
  if (group === null) return;
  const owner = api.transactions.groupOf(id);
  if (owner !== null && owner !== group) {
    throw new SpillwayError(
      'FORBIDDEN',
      `transaction ${id} belongs to producer group '${owner}', not '${group}'`,
    );
  }
}
