/**
 * Request headers of FORWARD_PRODUCE (75), FORWARD_SCAN (76) and DELAY_SCHEDULE (77), DELAY_SCHEDULE_COMMITTED (73), parsed strictly (a bad field is
 * INVALID_ARGUMENT). docs/PROTOCOL.md, "Forwarding".
 */
import { forwardScanBytesMax, leaderEpochMax, partitionIndexMax, topicNameLengthMax } from '../limits.js';
import type {
  DelayScheduleCommittedRequest,
  DelayScheduleRequest,
  ForwardProduceRequest,
  ForwardScanRequest,
} from './forwarding-api.js';
import { asFields, integerField, stringField } from './messages.js';

/** Longest service name (`delay`, `transactions`). */
const serviceNameLengthMax = 64;

export function parseForwardProduce(header: unknown): ForwardProduceRequest {
  const fields = asFields(header);
  return {
    service: stringField(fields, 'service', serviceNameLengthMax),
    fence: integerField(fields, 'fence', 0, leaderEpochMax),
    topic: stringField(fields, 'topic', topicNameLengthMax),
    partition: integerField(fields, 'partition', 0, partitionIndexMax),
  };
}

export function parseForwardScan(header: unknown): ForwardScanRequest {
  const fields = asFields(header);
  return {
    ...parseForwardProduce(fields),
    fromOffset: integerField(fields, 'fromOffset', 0, Number.MAX_SAFE_INTEGER),
    maxBytes: integerField(fields, 'maxBytes', 1, forwardScanBytesMax, forwardScanBytesMax),
  };
}

export function parseDelaySchedule(header: unknown): DelayScheduleRequest {
  const fields = asFields(header);
  return {
    topic: stringField(fields, 'topic', topicNameLengthMax),
    partition: integerField(fields, 'partition', 0, partitionIndexMax),
  };
}

export function parseDelayScheduleCommitted(header: unknown): DelayScheduleCommittedRequest {
  const fields = asFields(header);
  return {
    ...parseDelaySchedule(fields),
    commitMs: integerField(fields, 'commitMs', 0, Number.MAX_SAFE_INTEGER),
  };
}
