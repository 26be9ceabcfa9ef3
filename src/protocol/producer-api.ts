/**
 * The idempotent producer's part of the broker API (docs/PROTOCOL.md, INIT_PRODUCER and
 * "Idempotent PRODUCE"): registering a producer for a producer id and epoch. The sequence checks
 * themselves ride on PRODUCE (the batch header carries producerId, producerEpoch, baseSequence).
 */
import { InvalidArgumentError } from '../errors.js';
import { producerNameLengthMax } from '../limits.js';
import { asFields, stringField } from './messages.js';

export interface InitProducerRequest {
  /** The producer identity: registering it again bumps the epoch and fences the earlier instance. */
  name?: string;
}

export interface InitProducerResult {
  producerId: number;
  producerEpoch: number;
}

export interface ProducerService {
  /** A producer id and epoch, answered once durable (docs/PROTOCOL.md, INIT_PRODUCER). */
  initProducer(request: InitProducerRequest): Promise<InitProducerResult>;
}

/** INIT_PRODUCER request header: `{ name? }`. */
export function parseInitProducer(header: unknown): InitProducerRequest {
  const fields = asFields(header);
  for (const key of Object.keys(fields)) {
    if (key !== 'name') throw new InvalidArgumentError(`unknown INIT_PRODUCER field '${key}'`);
  }
  if (fields['name'] === undefined || fields['name'] === null) return {};
  return { name: stringField(fields, 'name', producerNameLengthMax) };
}
