/**
 * Record header keys the broker gives a meaning to (docs/PROTOCOL.md, "Reserved record headers").
 * A client may set them through the send options that own them; set by hand they mean the same.
 */

/** msgId of a message (UTF-8, 1..msgIdBytesMax bytes): deduplicated within the topic's dedupWindowMs. */
export const msgIdHeader = 'sw-msg-id';
