/**
 * Record header keys the broker and the client give a meaning to (docs/PROTOCOL.md, "Reserved record
 * headers"). Each feature adds its own constants here. Values are UTF-8 text.
 */

/**
 * Delayed messages: the due time of a record in a batch with the `delayed` attribute, epoch ms as
 * decimal text. The client sets it from `delayMs`/`deliverAt`; the broker refuses a delayed batch
 * with a record that lacks it. Not copied into the fired message.
 */
export const deliverAtHeader = 'sw-deliver-at';
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
