/**
 * Every queue, frame, batch and window in Spillway has a named bound, and they all live here.
 * Units are last in the name (`Bytes`, `Ms`, `Count`). Changing a bound that is part of the on-disk
 * or wire format (record-batch limits) is a format change: update docs/FORMAT.md too.
 */

/** Largest record batch, header included, that the broker accepts or the storage appends. */
export const batchBytesMax = 16 * 1024 * 1024;
/** Most records in one batch. */
export const batchRecordCountMax = 1_000_000;
/** Largest record key. */
export const recordKeyBytesMax = 64 * 1024;
/** Largest header key (UTF-8 bytes). */
export const recordHeaderKeyBytesMax = 1024;
/** Largest header value. */
export const recordHeaderValueBytesMax = 64 * 1024;
/** Most headers on one record. */
export const recordHeaderCountMax = 256;

/** Smallest and largest segment a partition log may be configured with. */
export const segmentBytesMin = 64 * 1024;
export const segmentBytesMax = 2 * 1024 * 1024 * 1024 - 1;
/** Default segment size: the most an active segment grows to; trimmed when rolled. */
export const segmentBytesDefault = 256 * 1024 * 1024;
/**
 * The active segment grows in steps (log-segment.ts): the first step preallocates this much, each
 * next one doubles what the segment holds, up to `segmentGrowthBytesMax` per step. Disk in
 * proportion to use: a partition with one small message holds one first step.
 */
export const segmentGrowthBytesMin = 64 * 1024;
export const segmentGrowthBytesMax = 64 * 1024 * 1024;
/**
 * A log prepares a spare segment (spare-segment.ts: the next segment, preallocated and zero-filled
 * in the background) only when it rolls often: after a segment filled up within this time.
 */
export const spareSegmentFillMsMax = 10 * 60 * 1000;
/** Bytes of log between two sparse index entries (offset index and time index). */
export const indexIntervalBytesDefault = 4096;
/** Default age after which the active segment is rolled even if not full (7 days, like Kafka). */
export const segmentMsDefault = 7 * 24 * 60 * 60 * 1000;
/** Default interval between fdatasync calls with durability `interval`. */
export const flushIntervalMsDefault = 200;
/** Default interval between writes of the recovery-point checkpoint file. */
export const checkpointIntervalMsDefault = 5000;
/** Appends waiting for a group-commit fdatasync at once (durability `always`) before append rejects. */
export const pendingSyncAppendCountMax = 100_000;

/** Largest WebSocket frame (message) the protocol accepts: a whole batch plus its control header. */
export const frameBytesMax = batchBytesMax + 64 * 1024;
/** Largest msgpack control header in a frame. */
export const frameHeaderBytesMax = 64 * 1024;
/** Requests in flight per connection before the broker answers TOO_MANY_REQUESTS. */
export const inFlightRequestsPerConnectionMax = 1024;
/** Open connections per server. */
export const connectionsMax = 10_000;
/** Longest long-poll a fetch may ask for. */
export const fetchMaxWaitMsMax = 30_000;
/** Largest maxBytes a fetch may ask for: an answer must fit one frame with its header. */
export const fetchMaxBytesMax = frameBytesMax - frameHeaderBytesMax - 16;

/** Longest topic name (the name is a directory name; 249 like Kafka, leaving room for suffixes). */
export const topicNameLengthMax = 249;
/** Most topics one broker holds (every partition keeps files and a map open). */
export const topicCountMax = 10_000;
/** Most partitions of one topic. */
export const partitionCountMax = 4096;
/** Fetches long-polling on one partition at once; more fail with BACKPRESSURE. */
export const fetchWaitersPerPartitionMax = 1024;
/** Fetches long-polling on the whole broker at once; more fail with BACKPRESSURE. */
export const fetchWaitersTotalMax = 65_536;
/** Default interval between two retention passes over every partition log (5 minutes). */
export const retentionCheckIntervalMsDefault = 5 * 60 * 1000;
/** Default disk reserve (disk-reserve.ts): this fraction of the data directory's file system... */
export const diskReserveFractionDefault = 0.05;
/** ...but at most this much. */
export const diskReserveBytesDefaultMax = 1024 * 1024 * 1024;
/** Longest time between two readings of the free disk space while produces arrive. */
export const diskCheckIntervalMs = 100;
/** Default scrub rate (scrubber.ts): bytes of sealed segments re-verified per second; 0: off. */
export const scrubBytesPerSecondDefault = 16 * 1024 * 1024;
/** Default pause between the end of one scrub pass over every sealed segment and the next. */
export const scrubPassIntervalMsDefault = 24 * 60 * 60 * 1000;
/** Scrub damage findings kept (the oldest are dropped past it; counters keep counting). */
export const scrubFindingsMax = 1000;
/** Longest msg-id dedup window a topic may be configured with (7 days). */
export const dedupWindowMsMax = 7 * 24 * 60 * 60 * 1000;

/**
 * WebSocket send buffer (bytes uWS holds for one connection, not yet taken by the kernel) above which
 * the server stops starting FETCH requests of that connection and holds finished answers until the
 * client reads (the `drain` event): a slow consumer cannot grow broker memory without bound.
 */
export const sendBufferBytesMax = 8 * 1024 * 1024;
/**
 * Hard ceiling of one connection's send buffer: only small error answers are sent past
 * sendBufferBytesMax (one frame of up to frameBytesMax may start just under it); a client that keeps
 * sending while never reading crosses this and is disconnected (close code 1008).
 */
export const sendBufferBytesHardMax = sendBufferBytesMax + frameBytesMax + 1024 * 1024;
/** Largest HTTP request body (JSON; base64 values grow 4/3). Larger: 413. */
export const httpBodyBytesMax = 32 * 1024 * 1024;
/** HTTP requests being handled at once per server (long-polls included). More: 429. */
export const httpInFlightRequestsMax = 4096;
/** Most messages one HTTP fetch (`GET .../messages?maxMessages=N`) returns. */
export const httpFetchMessagesMax = 10_000;
/** How long server close() waits for in-flight requests before closing connections anyway. */
export const serverCloseTimeoutMs = 10_000;
