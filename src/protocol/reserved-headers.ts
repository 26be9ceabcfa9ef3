/**
 * Record header keys Spillway reserves (prefix `sw-`). Each feature adds its own constants here.
 */

/**
 * The message id of `send({ msgId })`: the broker folds a repeated id within the topic's
 * `dedupWindowMs`, and consumer.run's idempotency kit uses it as the default idempotency key.
 */
export const msgIdHeader = 'sw-msg-id';
