/**
 * One FETCH (or LIST_OFFSET) of a data partition on the broker that leads it, for a service that
 * answers reads of partitions this broker holds no replica of (the group coordinator's GROUP_FETCH
 * and COMMIT_OFFSETS: docs/CLUSTER.md "Built: consumer groups"). The leader answers only below its
 * high watermark, as for any consumer;
 * its errors (NOT_LEADER while a leader moves, OFFSET_OUT_OF_RANGE) reach the caller unchanged, and
 * no known leader is NOT_LEADER (retriable). The batches are copied out of the connection's receive
 * buffer (reused by the next answer). A long-poll is bounded by the caller's maxWaitMs plus
 * `leaderFetchSlackMs`, and ends early when its signal aborts.
 */
import type { Transport } from '../../client/transport.js';
import { integerOf } from '../../client/wire.js';
import { SpillwayError } from '../../errors.js';
import { leaderFetchSlackMs } from '../../limits.js';
import type { FetchOptions, FetchResult } from '../../protocol/broker-api.js';
import { Opcode } from '../../protocol/opcodes.js';
import type { ForwardRoute } from '../forwarding/forwarder.js';

export interface LeaderFetchView {
  /** The partition's leader in this broker's view (url '' when it is this broker), or undefined. */
  leaderOf(topic: string, partition: number): ForwardRoute | undefined;
  /** The shared broker→broker connection to `url`. */
  connect(url: string): Promise<Transport>;
}

/** The leader of topic/partition, or NOT_LEADER (retriable) while this broker knows none other. */
function leaderRoute(view: LeaderFetchView, topic: string, partition: number): ForwardRoute {
  const route = view.leaderOf(topic, partition);
  if (route === undefined || route.url === '') {
    throw new SpillwayError(
      'NOT_LEADER',
      `${topic}/${partition}: no other broker leads it in this broker's view yet (retry)`,
    );
  }
  return route;
}

/**
 * LIST_OFFSET of topic/partition on the broker behind `transport` (`spec` 'earliest' or 'latest'):
 * the offset it answers (PROTOCOL_ERROR without one). Shared by the remote partition reader.
 */
export async function listOffsetOn(
  transport: Transport,
  topic: string,
  partition: number,
  spec: 'earliest' | 'latest',
  options: { timeoutMs: number; signal?: AbortSignal },
): Promise<number> {
  const answer = await transport.request(Opcode.listOffset, { topic, partition, spec }, undefined, options);
  return integerOf(answer.header, 'offset', `LIST_OFFSET of ${topic}/${partition}`);
}

/** The leader's high watermark of topic/partition (LIST_OFFSET latest there). */
export async function latestOffsetOnLeader(
  view: LeaderFetchView,
  topic: string,
  partition: number,
  signal?: AbortSignal,
): Promise<number> {
  const transport = await view.connect(leaderRoute(view, topic, partition).url);
  return listOffsetOn(transport, topic, partition, 'latest', {
    timeoutMs: leaderFetchSlackMs,
    ...(signal !== undefined ? { signal } : {}),
  });
}

export async function fetchFromLeader(
  view: LeaderFetchView,
  topic: string,
  partition: number,
  offset: number,
  options: FetchOptions,
): Promise<FetchResult> {
  const route = leaderRoute(view, topic, partition);
  const transport = await view.connect(route.url);
  const answer = await transport.request(
    Opcode.fetch,
    {
      topic,
      partition,
      offset,
      maxBytes: options.maxBytes,
      maxWaitMs: options.maxWaitMs,
      ...(options.minBytes !== undefined ? { minBytes: options.minBytes } : {}),
    },
    undefined,
    {
      timeoutMs: options.maxWaitMs + leaderFetchSlackMs,
      ...(options.signal !== undefined ? { signal: options.signal } : {}),
    },
  );
  const what = `FETCH of ${topic}/${partition} on broker ${route.brokerId}`;
  const field = (name: string): number => integerOf(answer.header, name, what);
  return {
    topic,
    partition,
    records: answer.body.slice(),
    batchCount: field('batchCount'),
    firstOffset: field('firstOffset'),
    nextOffset: field('nextOffset'),
    logStartOffset: field('logStartOffset'),
    highWatermark: field('highWatermark'),
  };
}
