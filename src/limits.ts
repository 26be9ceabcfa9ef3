/**
 * Every queue, frame, batch and window in Spillway has a named bound. The bounds the broker, the
 * storage and the protocol enforce, and the ranges of configurable values, live here; defaults of
 * client options and a few module-private bounds (the client's builder pool, the CLI's output window)
 * are named next to their use.
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
/** Largest bytes between two sparse index entries a partition log may be configured with (1 GiB). */
export const indexIntervalBytesMax = 1 << 30;
/** Default interval between fdatasync calls with durability `interval`. */
export const flushIntervalMsDefault = 200;
/** Longest flush interval of a topic or a partition log (durability `interval`): one hour. */
export const flushIntervalMsMax = 3_600_000;
/** Default interval between writes of the recovery-point checkpoint file. */
export const checkpointIntervalMsDefault = 5000;
/** Longest interval between recovery-point checkpoint writes: one hour. */
export const checkpointIntervalMsMax = 3_600_000;
/** Longest delay a Node.js timer accepts (2^31 - 1 ms): bounds intervals the broker runs on a timer. */
export const timerDelayMsMax = 2_147_483_647;
/** Damaged ranges one repair of a partition log sets aside before it gives up (log-repair.ts). */
export const repairStepsMax = 10_000;
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
/** Longest client id a HELLO may carry. */
export const clientIdLengthMax = 256;
/**
 * Largest partition number a request may name (a signed 32-bit integer, as in Kafka); a number past
 * the topic's partition count is answered UNKNOWN_PARTITION.
 */
export const partitionIndexMax = 0x7fff_ffff;
/** Longest long-poll a fetch may ask for. */
export const fetchMaxWaitMsMax = 30_000;
/** Largest maxBytes a fetch may ask for: an answer must fit one frame with its header. */
export const fetchMaxBytesMax = frameBytesMax - frameHeaderBytesMax - 16;
/** maxBytes of a fetch that does not say (protocol, HTTP and the client's consumer). */
export const fetchMaxBytesDefault = 1024 * 1024;

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
/**
 * Longest msg-id dedup window older versions accepted and stored (7 days). Msg-id dedup arrives in a
 * later version: new topics take only 0, and a stored window within this range loads as 0.
 */
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
/**
 * Bytes of HTTP request bodies being received, summed over every request of a server, before a body
 * that would pass it is refused (503 BACKPRESSURE, connection closed): slow or large uploads from
 * many clients cannot grow broker memory past it.
 */
export const httpBodyBudgetBytesDefault = 256 * 1024 * 1024;
/** Longest time an HTTP request body may take to arrive (408 TIMEOUT, connection closed). */
export const httpBodyTimeoutMsDefault = 30_000;
/** Deepest nesting of arrays and objects a JSON request body may have (400 above). */
export const jsonDepthMax = 64;
/**
 * Bytes of HTTP answers written to sockets and not yet taken by the kernel, summed over every
 * connection of a server: while above it, new fetches are refused (503 BACKPRESSURE); a connection
 * holding more than a quarter of it is closed.
 */
export const httpSendBudgetBytesDefault = 256 * 1024 * 1024;
/**
 * Open WebSocket connections from one source address (`maxConnectionsPerAddress` changes it). uWS
 * buffers a frame being received (up to frameBytesMax) out of the server's sight: this bounds what
 * one address can make the broker hold that way (16 x 16 MiB).
 */
export const connectionsPerAddressDefault = 16;
/** How long a new WebSocket connection may go without a HELLO before it is closed (1008). */
export const handshakeTimeoutMsDefault = 10_000;
/** HTTP requests being handled at once per server (long-polls included). More: 429. */
export const httpInFlightRequestsMax = 4096;
/** Most messages one HTTP fetch (`GET .../messages?maxMessages=N`) returns. */
export const httpFetchMessagesMax = 10_000;
/** Largest TCP port a server may listen on. */
export const portMax = 65_535;
/**
 * Sessions open at once per broker: one per WebSocket connection (connectionsMax), per HTTP request
 * being handled (httpInFlightRequestsMax) and per in-process client (up to 1024). More: TOO_MANY_REQUESTS.
 */
export const sessionsMax = connectionsMax + httpInFlightRequestsMax + 1024;
/**
 * Server requests (server -> client) of one session awaiting their answer; one more fails at once
 * with TOO_MANY_REQUESTS. A client runs at most this many server-request handlers at once.
 */
export const serverRequestsPerSessionMax = 64;
/** Default time a server request waits for the client's answer before failing with TIMEOUT. */
export const serverRequestTimeoutMsDefault = 10_000;
/** Longest timeout a server request may be given. */
export const serverRequestTimeoutMsMax = 5 * 60 * 1000;
/** Close hooks one session may hold at once (each later feature registers a few per session). */
export const sessionCloseHooksMax = 4096;
/** How long closing a session waits for its close hooks before reporting the late ones and going on. */
export const sessionCloseHooksWaitMs = 5_000;
/** How long server close() waits for in-flight requests before closing connections anyway. */
export const serverCloseTimeoutMs = 10_000;

/** Longest linger a producer may be configured with. */
export const producerLingerMsMax = 60_000;
/** Longest retry backoff (and backoff cap) of a producer or consumer: one hour. */
export const retryBackoffMsMax = 3_600_000;
/** Longest error text a nack carries (longer texts are cut): it ends up in dead-letter headers. */
export const nackErrorTextLengthMax = 4096;
/** Most handler calls consumer.run may have running at once (its `concurrency`). */
export const runConcurrencyMax = 4096;
/** Most worker threads consumer.run may start (its `threads`). */
export const runThreadsMax = 256;
/** Most messages consumer.run (or its worker pool) takes from the consumer ahead of the handlers. */
export const runQueuedMessagesMax = 1_000_000;
/** Most messages the worker pool hands to a worker in one task (its `batchMessages`). */
export const runBatchMessagesMax = 65_536;
/** Most batches in flight per partition a producer may be configured with. */
export const producerInFlightBatchesPerPartitionMax = 1024;
/** Most batches in flight in all a producer may be configured with. */
export const producerInFlightBatchesMax = 65_536;

/** Consumer groups (group and broadcast mode) a broker keeps, with or without members. More: INVALID_ARGUMENT. */
export const groupsMax = 10_000;
/** Members of one group at once. One more join: INVALID_ARGUMENT. */
export const groupMembersMax = 1_000;
/** Longest group name, in characters. */
export const groupNameLengthMax = 255;
/** Longest member id (a broadcast member's own id), in characters. */
export const memberIdLengthMax = 255;
/** Offsets one COMMIT_OFFSETS request may carry. */
export const groupCommitOffsetsMax = 4_096;
/** Offset commits written to `__consumer_offsets` and not yet durable, broker-wide. More: BACKPRESSURE. */
export const groupCommitsPendingMax = 65_536;
/** Session timeout of a group member: the bounds a join may ask for, and the default. */
export const groupSessionTimeoutMsMin = 100;
export const groupSessionTimeoutMsMax = 5 * 60 * 1000;
export const groupSessionTimeoutMsDefault = 10_000;
/** Longest a HEARTBEAT waits for a change of the member's assignment before it is answered. */
export const groupHeartbeatWaitMsMax = 60_000;
/** Heartbeats of one member waiting at once (a client keeps one). More: TOO_MANY_REQUESTS. */
export const groupHeartbeatsWaitingPerMemberMax = 4;
/**
 * Messages of one partition a group consumer has handed out and not seen acked: at this many it hands
 * out no more of that partition until some are acked (the finished-prefix bookkeeping stays bounded).
 */
export const groupConsumerUnfinishedMessagesMax = 1_000_000;
/**
 * Queue consumption (shared, key_shared): the broker hands out offsets of a queue partition only below
 * its ack floor + this many, so in-flight deliveries, settled ranges, delivery counts and retries of
 * a partition stay bounded; a consumer that never acks stops receiving from that partition.
 */
export const queueUnackedPerPartitionMax = 20_000;
/** Most messages one RECEIVE (or HTTP receive) answers. */
export const queueReceiveMessagesMax = 10_000;
/** Receives long-polling at once on one queue group (group, topic). More: TOO_MANY_REQUESTS. */
export const queueReceiveWaitersMax = 1024;
/** Queue groups (group, topic) a broker serves at once. More: TOO_MANY_REQUESTS. */
export const queueGroupsMax = 10_000;
/** Longest ack timeout and nack delay of a queue delivery: one day. */
export const queueDelayMsMax = 24 * 3_600_000;
/** Highest maxDeliveries of a queue group. */
export const queueMaxDeliveriesMax = 1000;
/** Most steps of a retryBackoffMs schedule. */
export const queueRetryBackoffStepsMax = 32;
/** Most offsets one ACK or NACK settles (ranges counted by their offsets), and receipts per HTTP call. */
export const queueSettleOffsetsMax = 100_000;
/** Longest error text kept for a failed delivery (longer is cut). */
export const queueErrorTextLengthMax = 1024;

/** Furthest ahead a delayed message may be due (10 years; 0 = now); further: INVALID_BATCH. */
export const delayAheadMsMax = 10 * 365 * 24 * 60 * 60 * 1000;
/** Largest batch of fired copies the delay service appends to one target partition at a time. */
export const delayFireBatchBytesMax = 1024 * 1024;
/** Most records in one batch of fired copies. */
export const delayFireRecordsMax = 10_000;
/** Segment size of `__delay` and `__delay_dead`: above batchBytesMax, so any produced batch fits. */
export const delaySegmentBytes = 32 * 1024 * 1024;
/** Wait before a round of fired copies that failed with a retriable error is tried again. */
export const delayRetryMs = 1000;
/**
 * Bytes appended to `__delay` after which its mapped pages are dropped from the broker's resident set
 * (they stay in the page cache): pending messages are read once, when due, so they need not count in RSS.
 */
export const delayResidentBytesMax = 16 * 1024 * 1024;
/** A delayed batch due sooner than this commits its target's fence at once, not at the first firing. */
export const delayPrefenceMs = 10_000;
