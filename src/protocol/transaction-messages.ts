/**
 * Headers of the transaction requests (docs/PROTOCOL.md, "Transactions"), parsed and validated here
 * for the broker (dispatch.ts); the client builds them:
 *
 *   TXN_BEGIN (20)     { group, checkAfterMs?, maxChecks? }            -> { id }
 *   TXN_SEND (21)      { id, topic, partition, group? }  body: one batch -> { halfOffset, records }
 *   TXN_END (22)       { id, decision: 'commit' | 'rollback', group? } -> { id, outcome, duplicate, decidedBy, messages }
 *
 * `group` in TXN_SEND and TXN_END: the producer group the sender acts for (the client always sends
 * it). When given, a transaction of another group is refused; with authentication on, the
 * principal needs produce on that group (protocol/opcode-access.ts).
 *   TXN_LIST (23)      {}                                              -> { transactions: [...], stats }
 *   TXN_REGISTER (24)  { group }                                       -> {}
 *   TXN_CHECK (65, server -> client)  { id, group, beganAtMs, checks } -> { decision: 'commit' | 'rollback' | 'unknown' }
 */
import { InvalidArgumentError } from '../errors.js';
import { partitionIndexMax, producerGroupNameLengthMax, topicNameLengthMax } from '../limits.js';
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

export function parseTransactionSend(header: unknown): {
  id: number;
  topic: string;
  partition: number;
  group: string | null;
} {
  const fields = asFields(header);
  return {
    id: integerField(fields, 'id', 1, Number.MAX_SAFE_INTEGER),
    topic: stringField(fields, 'topic', topicNameLengthMax),
    partition: integerField(fields, 'partition', 0, partitionIndexMax),
    group: optionalGroup(fields),
  };
}

export function parseTransactionEnd(header: unknown): {
  id: number;
  decision: TransactionDecision;
  group: string | null;
} {
  const fields = asFields(header);
  const decision = fields['decision'];
  if (decision !== 'commit' && decision !== 'rollback') {
    throw new InvalidArgumentError(
      `decision must be 'commit' or 'rollback', got ${JSON.stringify(decision)}`,
    );
  }
  return {
    id: integerField(fields, 'id', 1, Number.MAX_SAFE_INTEGER),
    decision,
    group: optionalGroup(fields),
  };
}

export function parseTransactionRegister(header: unknown): { group: string } {
  return { group: stringField(asFields(header), 'group', producerGroupNameLengthMax) };
}
