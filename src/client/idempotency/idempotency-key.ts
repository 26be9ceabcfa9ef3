/**
 * The idempotency key of a consumed message: what an idempotency store records.
 *
 * Default: the message id when the producer set one (`send({ msgId })`, record header `sw-msg-id`):
 * `TOPIC/id/MSGID`, so two copies produced with the same msgId (a producer retry outside the topic's
 * dedup window) are one message; otherwise its position `TOPIC/PARTITION/OFFSET`, so a redelivery
 * of the same record (a rewind, a group replayed from earliest, a queue redelivery) is one message.
 * Topic names hold no '/', and 'id' is no partition number: the two forms never collide.
 * With `idempotencyKey: (message) => string` the user's function decides (a business id from the
 * value, say); it must return a non-empty string of at most idempotencyKeyLengthMax characters.
 */
import { InvalidArgumentError } from '../../errors.js';
import { idempotencyKeyLengthMax } from '../../limits.js';
import { msgIdHeader } from '../../protocol/reserved-headers.js';
import type { ConsumedMessage } from '../message.js';

export type IdempotencyKeyFunction = (message: ConsumedMessage) => string;

export function defaultIdempotencyKey(message: ConsumedMessage): string {
  const msgId = message.headers[msgIdHeader];
  if (msgId !== undefined && msgId !== null && msgId.length > 0)
    return `${message.topic}/id/${msgId.toString('utf8')}`;
  return `${message.topic}/${message.partition}/${message.offset}`;
}

/** The key of `message` by `keyFunction`, checked: a non-empty string of at most idempotencyKeyLengthMax. */
export function idempotencyKeyOf(message: ConsumedMessage, keyFunction: IdempotencyKeyFunction): string {
  const key = keyFunction(message);
  if (typeof key !== 'string' || key.length === 0 || key.length > idempotencyKeyLengthMax) {
    throw new InvalidArgumentError(
      `the idempotency key of ${message.topic}/${message.partition}@${message.offset} must be a non-empty string of at most ${idempotencyKeyLengthMax} characters, got ${typeof key === 'string' ? `${key.length} characters` : typeof key}`,
    );
  }
  return key;
}
