/**
 * Authorization of requests (docs/SECURITY.md, "What each request needs"): one table from opcode to
 * the checks a principal must pass, each check a (resource, operation) and the names it applies to,
 * read from the request's control header before it is parsed. A feature that adds an opcode adds
 * one line here; `dispatch` refuses (FORBIDDEN) every opcode without a line when authentication is
 * on, so a forgotten line fails closed (test/protocol/opcode-access.test.ts checks that every
 * opcode of Opcode has one).
 *
 * Names are read leniently: a missing or non-string name is checked as the empty name, which only
 * `*` and `prefix*` with an empty prefix match; the request is then refused by its parser anyway.
 * Pure functions; nothing here is state.
 */
import { SpillwayError } from '../errors.js';
import type { AccessList, Operation, ResourceType } from './access-control.js';
import { Opcode, opcodeName } from './opcodes.js';

/** One check: the principal needs `operation` on each of `names` of type `resource`. */
export interface AccessCheck {
  resource: ResourceType;
  operation: Operation;
  names: (header: Record<string, unknown>) => readonly string[];
}

/** No check at all: HELLO (authentication happens in it). */
export const publicRequest = 'public' as const;
/** Never allowed from a client (requests the server sends). */
export const serverOnly = 'server-only' as const;
export type OpcodeAccess = readonly AccessCheck[] | typeof publicRequest | typeof serverOnly;

const fieldOf = (header: Record<string, unknown>, name: string): string => {
  const value = header[name];
  return typeof value === 'string' ? value : '';
};
/** The string field `name` of the header. */
const field =
  (name: string) =>
  (header: Record<string, unknown>): readonly string[] => [fieldOf(header, name)];
/** Every string of the list field `name` (missing: none). */
const list =
  (name: string) =>
  (header: Record<string, unknown>): readonly string[] => {
    const value = header[name];
    return Array.isArray(value) ? value.map((item) => (typeof item === 'string' ? item : '')) : [];
  };
/** The `topic` of every object of the list field `name` (offsets, partitions). */
const topicsIn =
  (name: string) =>
  (header: Record<string, unknown>): readonly string[] => {
    const value = header[name];
    if (!Array.isArray(value)) return [];
    return value.map((item) =>
      item !== null && typeof item === 'object' ? fieldOf(item as Record<string, unknown>, 'topic') : '',
    );
  };
/** The field `name` when present, else nothing. */
const optionalField =
  (name: string) =>
  (header: Record<string, unknown>): readonly string[] =>
    header[name] === undefined ? [] : [fieldOf(header, name)];
/** The topic field when present (queue ack/nack by ranges), else nothing (by receipts). */
const optionalTopic = optionalField('topic');
const cluster = (): readonly string[] => ['*'];
/** TXN_SEND: its `topic`, and the topic of every part of `parts` (at least one name: none checks ''). */
const topicOrParts = (header: Record<string, unknown>): readonly string[] => {
  const names = [...optionalField('topic')(header), ...topicsIn('parts')(header)];
  return names.length > 0 ? names : [''];
};

const check = (resource: ResourceType, operation: Operation, names: AccessCheck['names']): AccessCheck => ({
  resource,
  operation,
  names,
});

/** What each opcode needs. One line per opcode; keep the order of opcodes.ts. */
export const opcodeAccess: ReadonlyMap<number, OpcodeAccess> = new Map<number, OpcodeAccess>([
  [Opcode.hello, publicRequest],
  [Opcode.createTopic, [check('topic', 'admin', field('name'))]],
  [Opcode.deleteTopic, [check('topic', 'admin', field('name'))]],
  [Opcode.listTopics, [check('cluster', 'describe', cluster)]],
  [Opcode.describeTopic, [check('topic', 'describe', field('name'))]],
  [Opcode.addPartitions, [check('topic', 'admin', field('name'))]],
  [Opcode.produce, [check('topic', 'produce', field('topic'))]],
  [Opcode.fetch, [check('topic', 'consume', field('topic'))]],
  [Opcode.listOffset, [check('topic', 'describe', field('topic'))]],
  // Like Kafka's IdempotentWrite on the cluster: producer ids are a broker-wide, bounded resource.
  [Opcode.initProducer, [check('cluster', 'produce', cluster)]],
  [Opcode.txnBegin, [check('group', 'produce', field('group'))]],
  [Opcode.txnSend, [check('group', 'produce', field('group')), check('topic', 'produce', topicOrParts)]],
  [Opcode.txnEnd, [check('group', 'produce', field('group'))]],
  [Opcode.txnList, [check('cluster', 'describe', cluster)]],
  [Opcode.txnRegister, [check('group', 'produce', field('group'))]],
  [Opcode.txnIds, [check('group', 'produce', field('group'))]],
  [Opcode.delayStats, [check('cluster', 'describe', cluster)]],
  [Opcode.metadata, [check('topic', 'describe', list('topics'))]],
  [Opcode.integrityReport, [check('cluster', 'describe', cluster)]],
  [Opcode.repairPartition, [check('cluster', 'admin', cluster)]],
  [Opcode.joinGroup, [check('group', 'consume', field('group')), check('topic', 'consume', list('topics'))]],
  [Opcode.heartbeat, [check('group', 'consume', field('group'))]],
  [Opcode.leaveGroup, [check('group', 'consume', field('group'))]],
  [
    Opcode.releasePartitions,
    [check('group', 'consume', field('group')), check('topic', 'consume', topicsIn('partitions'))],
  ],
  [
    Opcode.commitOffsets,
    [check('group', 'consume', field('group')), check('topic', 'consume', topicsIn('offsets'))],
  ],
  [Opcode.groupFetch, [check('group', 'consume', field('group')), check('topic', 'consume', field('topic'))]],
  [Opcode.listGroups, [check('cluster', 'describe', cluster)]],
  [Opcode.describeGroup, [check('group', 'describe', field('group'))]],
  [
    Opcode.queueReceive,
    [
      check('group', 'consume', field('group')),
      check('topic', 'consume', field('topic')),
      // A dead-letter topic the request names is written with the group's nacked messages.
      check('topic', 'produce', optionalField('deadLetterTopic')),
    ],
  ],
  [Opcode.queueAck, [check('group', 'consume', field('group')), check('topic', 'consume', optionalTopic)]],
  [Opcode.queueNack, [check('group', 'consume', field('group')), check('topic', 'consume', optionalTopic)]],
  [
    Opcode.queueDescribe,
    [
      {
        resource: 'group',
        operation: 'describe',
        names: (header) => (header['group'] === undefined ? [] : [fieldOf(header, 'group')]),
      },
      {
        resource: 'cluster',
        operation: 'describe',
        names: (header) => (header['group'] === undefined ? ['*'] : []),
      },
    ],
  ],
  [Opcode.ping, serverOnly],
  [Opcode.txnCheck, serverOnly],
  // Replication: a follower reads every partition it follows and reports for the ISR: the cluster's admin.
  [Opcode.replicaFetch, [check('cluster', 'admin', cluster)]],
  [Opcode.offsetForLeaderEpoch, [check('cluster', 'admin', cluster)]],
  // Forwarding: a service of another broker writes into (and scans) any partition: the cluster's admin.
  [Opcode.forwardProduce, [check('cluster', 'admin', cluster)]],
  [Opcode.forwardScan, [check('cluster', 'admin', cluster)]],
  // A partition leader hands a client's delayed batch (already admitted there) to the delay service.
  [Opcode.delaySchedule, [check('cluster', 'admin', cluster)]],
  // A transaction coordinator hands a committed delayed batch to the delay service.
  [Opcode.delayScheduleCommitted, [check('cluster', 'admin', cluster)]],
]);

const emptyHeader: Record<string, unknown> = {};

/**
 * Throws FORBIDDEN unless `access` passes every check of `opcode` for this header. An opcode without
 * an entry in the table is refused (fail closed), as is a server-only opcode.
 */
export function authorize(access: AccessList, principalName: string, opcode: number, header: unknown): void {
  const entry = opcodeAccess.get(opcode);
  if (entry === publicRequest) return;
  if (entry === undefined || entry === serverOnly) {
    throw new SpillwayError(
      'FORBIDDEN',
      `${opcodeName(opcode) ?? `opcode ${opcode}`} is not allowed: no access rule covers it (docs/SECURITY.md)`,
    );
  }
  const fields =
    header !== null && typeof header === 'object' && !Array.isArray(header)
      ? (header as Record<string, unknown>)
      : emptyHeader;
  for (const { resource, operation, names } of entry) {
    for (const name of names(fields)) requireAccess(access, principalName, resource, operation, name, opcode);
  }
}

/** Throws FORBIDDEN unless `access` allows `operation` on the resource (HTTP routes call it too). */
export function requireAccess(
  access: AccessList,
  principalName: string,
  resource: ResourceType,
  operation: Operation,
  name: string,
  opcode?: number,
): void {
  if (access.allows(resource, operation, name)) return;
  const what = resource === 'cluster' ? 'the cluster' : `${resource} '${name}'`;
  const request = opcode === undefined ? '' : ` (${opcodeName(opcode) ?? opcode})`;
  throw new SpillwayError('FORBIDDEN', `principal '${principalName}' may not ${operation} ${what}${request}`);
}
