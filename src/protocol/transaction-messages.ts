/**
 * Headers of the transaction requests (docs/PROTOCOL.md, "Transactions"), parsed and validated here
 * for the broker (dispatch.ts); the client builds them:
 *
 *   TXN_BEGIN (20)     { group, checkAfterMs?, maxChecks? }            -> { id }
 *   TXN_SEND (21)      { id, topic, partition, group?, begin? }  body: one batch -> { halfOffset, records }
 *                      { id, parts: [{ topic, partition }, ...], group?, begin? }  body: one batch per part
 *                                                                  -> { halfOffsets, records }
 *   TXN_END (22)       { id, decision: 'commit' | 'rollback', group?, begin? } -> { id, outcome, duplicate, decidedBy, messages }
 *   TXN_IDS (25)       { group, count }                                -> { from, count }
 *
 * `begin` ({ checkAfterMs?, maxChecks? }, with `group`): begins transaction `id` first when it is an
 * id TXN_IDS reserved for this session and not begun yet (docs/TRANSACTIONS.md).
 *
 * `group` in TXN_SEND and TXN_END: the producer group the sender acts for (the client always sends
 * it). When given, a transaction of another group is refused; with authentication on, the
 * principal needs produce on that group (protocol/opcode-access.ts).
 *   TXN_LIST (23)      {}                                              -> { transactions: [...], stats }
 *   TXN_REGISTER (24)  { group }                                       -> {}
 *   TXN_CHECK (65, server -> client)  { id, group, beganAtMs, checks } -> { decision: 'commit' | 'rollback' | 'unknown' }
 */
import { InvalidArgumentError } from '../errors.js';
import {
  partitionIndexMax,
  producerGroupNameLengthMax,
  topicNameLengthMax,
  transactionHalfBatchesMax,
  transactionIdLeaseMax,
} from '../limits.js';
import { asFields, integerField, stringField } from './messages.js';
import type { BeginTransactionRequest, TransactionDecision } from './transaction-api.js';

export function parseTransactionBegin(header: unknown): BeginTransactionRequest {
  const fields = asFields(header);
  const request: BeginTransactionRequest = {
    group: stringField(fields, 'group', producerGroupNameLengthMax),
  };
  if (fields['checkAfterMs'] !== undefined) {
    request.checkAfterMs = integerField(fields, 'checkAfterMs', 0, Number.MAX_SAFE_INTEGER);
  }
  if (fields['maxChecks'] !== undefined) {
    request.maxChecks = integerField(fields, 'maxChecks', 0, Number.MAX_SAFE_INTEGER);
  }
  return request;
}

/** The optional `group` of TXN_SEND / TXN_END: null when absent. */
function optionalGroup(fields: Record<string, unknown>): string | null {
  return fields['group'] === undefined ? null : stringField(fields, 'group', producerGroupNameLengthMax);
}

/** The optional `begin` of TXN_SEND / TXN_END: the transaction's settings, null when absent. */
function optionalBegin(
  fields: Record<string, unknown>,
  group: string | null,
): BeginTransactionRequest | null {
  if (fields['begin'] === undefined) return null;
  if (group === null) throw new InvalidArgumentError('begin needs the producer group (group)');
  return parseTransactionBegin({ ...asFields(fields['begin']), group });
}

export interface TransactionSendRequest {
  id: number;
  /** Where each batch of the body goes; `single`: the one-batch form ({ topic, partition }). */
  parts: Array<{ topic: string; partition: number }>;
  single: boolean;
  group: string | null;
  begin: BeginTransactionRequest | null;
  /**
   * The request's number within its transaction (the client counts its TXN_SENDs from 0):
   * a resend of a numbered request (rerouted after its coordinator moved) is answered with the halves
   * stored the first time instead of storing them again. Absent: not numbered.
   */
  seq?: number;
}

export function parseTransactionSend(header: unknown): TransactionSendRequest {
  const fields = asFields(header);
  const id = integerField(fields, 'id', 1, Number.MAX_SAFE_INTEGER);
  const group = optionalGroup(fields);
  const begin = optionalBegin(fields, group);
  const numbered = fields['seq'] === undefined ? {} : { seq: integerField(fields, 'seq', 0, 2 ** 36) };
  if (fields['parts'] === undefined) {
    return {
      id,
      parts: [
        {
          topic: stringField(fields, 'topic', topicNameLengthMax),
          partition: integerField(fields, 'partition', 0, partitionIndexMax),
        },
      ],
      single: true,
      group,
      begin,
      ...numbered,
    };
  }
  if (fields['topic'] !== undefined || fields['partition'] !== undefined) {
    throw new InvalidArgumentError('TXN_SEND takes either topic and partition or parts, not both');
  }
  const list = fields['parts'];
  if (!Array.isArray(list) || list.length === 0 || list.length > transactionHalfBatchesMax) {
    throw new InvalidArgumentError(
      `parts must be a list of 1 to ${transactionHalfBatchesMax} { topic, partition }`,
    );
  }
  const parts = list.map((part: unknown) => {
    const partFields = asFields(part);
    return {
      topic: stringField(partFields, 'topic', topicNameLengthMax),
      partition: integerField(partFields, 'partition', 0, partitionIndexMax),
    };
  });
  return { id, parts, single: false, group, begin, ...numbered };
}

export function parseTransactionIds(header: unknown): { group: string; count: number } {
  const fields = asFields(header);
  return {
    group: stringField(fields, 'group', producerGroupNameLengthMax),
    count: integerField(fields, 'count', 1, transactionIdLeaseMax),
  };
}

export function parseTransactionEnd(header: unknown): {
  id: number;
  decision: TransactionDecision;
  group: string | null;
  begin: BeginTransactionRequest | null;
} {
  const fields = asFields(header);
  const decision = fields['decision'];
  if (decision !== 'commit' && decision !== 'rollback') {
    throw new InvalidArgumentError(
      `decision must be 'commit' or 'rollback', got ${JSON.stringify(decision)}`,
    );
  }
  const group = optionalGroup(fields);
  return {
    id: integerField(fields, 'id', 1, Number.MAX_SAFE_INTEGER),
    decision,
    group,
    begin: optionalBegin(fields, group),
  };
}

export function parseTransactionRegister(header: unknown): { group: string } {
  return { group: stringField(asFields(header), 'group', producerGroupNameLengthMax) };
}
