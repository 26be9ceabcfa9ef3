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

/**
 * Delayed messages: the due time of a record in a batch with the `delayed` attribute, epoch ms as
 * decimal text. The client sets it from `delayMs`/`deliverAt`; the broker refuses a delayed batch
 * with a record that lacks it. Not copied into the fired message.
 */
export const deliverAtHeader = 'sw-deliver-at';
/**
 * Delayed messages: the delay of a record in a delayed batch, ms as decimal text, counted by the
 * broker: from the commit of its transaction (`txn.send({ delayMs })`), or from when the broker
 * stored it (a produce). `sw-deliver-at` wins when both are given. Not copied into the fired message.
 */
export const delayMsHeader = 'sw-delay-ms';
/** Delayed messages: on the fired copy in the target topic, the due time (epoch ms, decimal text). */
export const originalDeliverAtHeader = 'sw-original-deliver-at';
/**
 * Delayed messages: on the fired copy, where the message waited: `<offset>:<index>` (the offset of
 * its batch in `__delay` and its index in the batch). Recovery looks for it to fire once.
 */
export const delayRefHeader = 'sw-delay-ref';
/** Delayed messages sent to `__delay_dead`: why (e.g. the target topic was deleted). */
export const delayDeadReasonHeader = 'sw-delay-dead-reason';
/** Delayed messages sent to `__delay_dead`: the target topic and partition (`topic/partition`). */
export const delayTargetHeader = 'sw-delay-target';
/**
 * Transactions in a cluster: on every message a commit copied into its target partition through
 * forwarding, `<transaction id>:<half index>` (decimal). A coordinator taking over scans the targets
 * for it to copy each half exactly once (docs/TRANSACTIONS.md, "In a cluster").
 */
export const transactionStampHeader = 'sw-txn';
