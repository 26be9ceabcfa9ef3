/**
 * Record header keys Spillway itself reads or writes. Every feature that gives a header a meaning
 * names it here, once; user headers should not start with `sw-`.
 */

/**
 * Backlog drain (client/backlog-drain.ts): every message copied into the drain's target topic
 * carries where it came from, `<source topic>:<source partition>:<source offset>` (decimal; the topic
 * is everything before the last two colons). A resumed drain reads these to find what a previous,
 * interrupted run already copied. A copy of a message that had these headers gets new values.
 */
export const drainSourceHeader = 'sw-drain-source';
/** Backlog drain: the group whose backlog was drained (two groups may drain into one topic). */
export const drainGroupHeader = 'sw-drain-group';

/**
 * The message id of `send({ msgId })`: the broker folds a repeated id within the topic's
 * `dedupWindowMs`, and consumer.run's idempotency kit uses it as the default idempotency key.
 */
export const msgIdHeader = 'sw-msg-id';
