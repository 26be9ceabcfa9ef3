/**
 * Where a request goes in a cluster (docs/CLUSTER.md, "Clients"): `requestRoute(opcode, header)` says
 * whether it belongs to a data partition (PRODUCE, FETCH, LIST_OFFSET: its leader), to a service
 * (the opcodes of protocol/coordinator-routing.ts: the leader of the service's internal topic,
 * partition 0), or to any broker (HELLO, METADATA, topic admin, integrity). `reroutable(error)` says
 * whether an error means "the request went to the wrong broker, or that broker is gone": then the
 * client refreshes its metadata and sends the request again. Pure functions: no state, no I/O.
 */
import { SpillwayError } from '../errors.js';
import { coordinatorTopicOf } from '../protocol/coordinator-routing.js';
import { Opcode } from '../protocol/opcodes.js';

export type RequestRoute =
  | { readonly kind: 'partition'; readonly topic: string; readonly partition: number }
  | { readonly kind: 'coordinator'; readonly topic: string }
  | { readonly kind: 'any' };

const anyBroker: RequestRoute = { kind: 'any' };

/** The route of one request; a data request whose header names no topic/partition goes to any broker (which refuses it). */
export function requestRoute(opcode: number, header: unknown): RequestRoute {
  if (opcode === Opcode.produce || opcode === Opcode.fetch || opcode === Opcode.listOffset) {
    const fields = header as { topic?: unknown; partition?: unknown } | null;
    if (
      fields !== null &&
      typeof fields === 'object' &&
      typeof fields.topic === 'string' &&
      typeof fields.partition === 'number'
    ) {
      return { kind: 'partition', topic: fields.topic, partition: fields.partition };
    }
    return anyBroker;
  }
  const topic = coordinatorTopicOf(opcode);
  return topic === undefined ? anyBroker : { kind: 'coordinator', topic };
}

/** Codes meaning "send it to the broker metadata names now" whatever the broker said about retrying. */
const wrongBrokerCodes: ReadonlySet<string> = new Set([
  'NOT_LEADER',
  'FENCED_LEADER_EPOCH',
  'NOT_COORDINATOR',
]);

/**
 * True when `error` means the request reached the wrong broker (NOT_LEADER, FENCED_LEADER_EPOCH,
 * NOT_COORDINATOR) or the broker could not be reached (CONNECTION_CLOSED, retriable: the connection
 * was lost or could not be opened). `retired` is true when the connection was closed by the router
 * itself (a broker that left the metadata): its CONNECTION_CLOSED is then not the caller's close.
 */
export function reroutable(error: unknown, retired = false): boolean {
  if (!(error instanceof SpillwayError)) return false;
  if (wrongBrokerCodes.has(error.code)) return true;
  return error.code === 'CONNECTION_CLOSED' && (error.retriable || retired);
}

/** The wait before the `attempt`-th resend (1-based): min * 2^(attempt-1), at most max. */
export function rerouteBackoffMs(attempt: number, minMs: number, maxMs: number): number {
  return Math.min(maxMs, minMs * 2 ** Math.min(Math.max(attempt - 1, 0), 30));
}
