/**
 * Request headers of the replication opcodes (docs/PROTOCOL.md, "Replication"): REPLICA_FETCH (80)
 * and OFFSET_FOR_LEADER_EPOCH (81), parsed strictly (a bad field is INVALID_ARGUMENT), and the
 * optional `acks` / `leaderEpoch` of PRODUCE.
 */
import { InvalidArgumentError } from '../errors.js';
import {
  brokerIdMax,
  fetchMaxBytesMax,
  leaderEpochMax,
  partitionIndexMax,
  replicaFetchMaxBytesDefault,
  replicaFetchMaxWaitMsMax,
  topicNameLengthMax,
} from '../limits.js';
import { asFields, integerField, stringField } from './messages.js';
import {
  type Acks,
  acksValues,
  type OffsetForLeaderEpochRequest,
  type ProduceOptions,
  type ReplicaFetchRequest,
} from './replication-api.js';

export function parseReplicaFetch(header: unknown): ReplicaFetchRequest {
  const fields = asFields(header);
  return {
    topic: stringField(fields, 'topic', topicNameLengthMax),
    partition: integerField(fields, 'partition', 0, partitionIndexMax),
    replicaId: integerField(fields, 'replicaId', 0, brokerIdMax),
    leaderEpoch: integerField(fields, 'leaderEpoch', 0, leaderEpochMax),
    fetchOffset: integerField(fields, 'fetchOffset', 0, Number.MAX_SAFE_INTEGER),
    durableOffset: integerField(fields, 'durableOffset', 0, Number.MAX_SAFE_INTEGER),
    highWatermark: integerField(fields, 'highWatermark', 0, Number.MAX_SAFE_INTEGER),
    maxBytes: integerField(fields, 'maxBytes', 1, fetchMaxBytesMax, replicaFetchMaxBytesDefault),
    maxWaitMs: integerField(fields, 'maxWaitMs', 0, replicaFetchMaxWaitMsMax, 0),
  };
}

export function parseOffsetForLeaderEpoch(header: unknown): OffsetForLeaderEpochRequest {
  const fields = asFields(header);
  return {
    topic: stringField(fields, 'topic', topicNameLengthMax),
    partition: integerField(fields, 'partition', 0, partitionIndexMax),
    replicaId: integerField(fields, 'replicaId', 0, brokerIdMax),
    leaderEpoch: integerField(fields, 'leaderEpoch', 0, leaderEpochMax),
    epoch: integerField(fields, 'epoch', -1, leaderEpochMax),
  };
}

/** The optional `acks` and `leaderEpoch` of a PRODUCE header (absent: none). */
export function parseProduceOptions(header: unknown): ProduceOptions | undefined {
  const fields = asFields(header);
  const acks = fields['acks'];
  const leaderEpoch = fields['leaderEpoch'];
  if (acks === undefined && leaderEpoch === undefined) return undefined;
  const options: ProduceOptions = {};
  if (acks !== undefined) {
    if (!acksValues.includes(acks as Acks)) {
      throw new InvalidArgumentError(
        `acks must be one of ${acksValues.join(', ')}, got ${JSON.stringify(acks)}`,
      );
    }
    options.acks = acks as Acks;
  }
  if (leaderEpoch !== undefined) options.leaderEpoch = integerField(fields, 'leaderEpoch', 0, leaderEpochMax);
  return options;
}
