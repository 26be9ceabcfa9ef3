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
/**
 * Group-commit fdatasync rounds of one log in flight at once (sync-scheduler.ts): on a lightly loaded
 * log an append arriving while one runs gets its own round at once instead of waiting for that one
 * to end (issue 15).
 */
export const syncRoundsInFlightMax = 2;
/**
 * A log is lightly loaded (sync rounds may overlap) while its last completed round acknowledged at
 * most this many appends; more, and rounds run one at a time, each covering all that arrived
 * meanwhile (overlapping rounds then only added fdatasyncs: `always` 100 B produce lost ~10-25%).
 */
export const syncPipelineWaitersMax = 4;

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
/** Longest token a HELLO or an `Authorization: Bearer` header may carry (characters). */
export const tokenLengthMax = 1024;
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
/** Longest msg-id dedup window of a topic (7 days). */
export const dedupWindowMsMax = 7 * 24 * 60 * 60 * 1000;
/** Longest msgId (record header `sw-msg-id`), in UTF-8 bytes. */
export const msgIdBytesMax = 256;
/**
 * Msg ids the broker's dedup index holds at most, all topics together (recorded and in flight);
 * past it, produces with new msgIds to dedup topics are refused with BACKPRESSURE until old ids
 * expire. 10^7 ids x ~80 bytes measured (docs/BENCHMARKS.md): ~750 MiB at most.
 */
export const dedupIdsMaxDefault = 10_000_000;
/** How often the dedup service expires old ids and records how far each partition was indexed. */
export const dedupSweepIntervalMs = 1000;
/** Ids per `__dedup` entry (an entry must fit one state-log batch of 1 MiB: 2048 x 256 B ids). */
export const dedupEntryIdsMax = 2048;
/**
 * Cluster mode: bytes of a partition's log a new leader reads per event-loop turn while it rebuilds
 * the partition's msgId index (dedup/cluster-dedup-index.ts).
 */
export const dedupRebuildSliceBytes = 1024 * 1024;

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
/**
 * Unsent WebSocket answer bytes of all connections together above which the server holds
 * large-answer requests and closes connections that do not read (server/memory-guard.ts).
 */
export const memoryBudgetBytesDefault = 512 * 1024 * 1024;
/**
 * Anonymous resident memory of the broker process (heap and buffers, not the mapped log) the memory
 * guard keeps it under: a margin before it, new WebSocket connections are refused and connections
 * that answer no ping are closed (server/memory-guard.ts).
 */
export const memoryCeilingBytesDefault = 1536 * 1024 * 1024;
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
/** Longest idempotency key consumer.run accepts (msgId, topic/partition/offset or the user's function). */
export const idempotencyKeyLengthMax = 1024;
/** Most ids an idempotency memoryStore may be configured to keep (its `max`). */
export const idempotencyMemoryIdsMax = 10_000_000;
/** Longest time an idempotency store may keep an id (its `ttlMs`): 366 days. */
export const idempotencyTtlMsMax = 366 * 24 * 60 * 60 * 1000;
/** Expired rows the SQLite idempotency store deletes per purge (one purge every this many records). */
export const idempotencySqlitePurgeRowsMax = 1000;
/** Most batches in flight per partition a producer may be configured with. */
export const producerInFlightBatchesPerPartitionMax = 1024;
/** Most batches in flight in all a producer may be configured with. */
export const producerInFlightBatchesMax = 65_536;
/** Default bytes of batches a producer keeps in flight per partition (one batch may take it past). */
export const producerInFlightBytesPerPartitionDefault = 4 * 1024 * 1024;
/** Default bytes of batches a producer keeps in flight in all, on its one connection. */
export const producerInFlightBytesDefault = 16 * 1024 * 1024;
/**
 * Largest batch the producer's adaptive sizing makes on its own: with the default batchBytes, a batch
 * grows to hold at least producerBatchRecordsTarget records of the size being sent, up to this. A
 * quarter of a consumer's default fetch (1 MiB), so that fetches carry 3–4 whole batches: with 512 KiB
 * batches a 1 MiB fetch carried one (measured: 16 KiB consume 0.5–0.8x).
 */
export const producerAdaptiveBatchBytesMax = 256 * 1024;
/**
 * Bytes of acknowledged batch buffers a producer keeps to seal its next batches in (accumulator.ts):
 * two partitions' default in-flight bytes, enough for the acks of one fdatasync (group commit) to
 * come back at once without the next seals allocating.
 */
export const producerSpareBatchBytesMax = 8 * 1024 * 1024;
/** Records a batch is sized for when the records are large (see producerAdaptiveBatchBytesMax). */
export const producerBatchRecordsTarget = 16;
/** Most records one producer.sendBatch() call may carry. */
export const sendBatchRecordsMax = 1_000_000;

/**
 * Per-partition lag series (spillway_group_lag, spillway_broadcast_lag, spillway_queue_*) one scrape
 * of GET /metrics writes at most; queue groups, then groups, each in name order, get theirs until
 * the budget is spent, the others only their per-group sum (spillway_group_lag_sum, bounded by groupsMax + queueGroupsMax).
 */
export const metricsLagSeriesMax = 10_000;
/**
 * Idempotent producer: the broker remembers the offsets of this many last batches per (producer,
 * partition), so a retried batch among them is answered with its original offsets. An idempotent
 * client keeps at most this many batches in flight per partition (a retry is then always among them).
 */
export const producerBatchesRememberedMax = 5;
/** Producer ids a broker holds at once (BrokerOptions.producersMax): the default and the bounds. */
export const producersMaxDefault = 100_000;
export const producersMaxMax = 10_000_000;
/** A producer id unused this long is dropped with its sequences (BrokerOptions.producerIdleExpiryMs). */
export const producerIdleExpiryMsDefault = 7 * 24 * 60 * 60 * 1000;
/** How often the broker writes sequence snapshots of changed partitions (BrokerOptions.producerSnapshotIntervalMs). */
export const producerSnapshotIntervalMsDefault = 5_000;
/** Longest producer identity (ProducerOptions.producerName), in characters. */
export const producerNameLengthMax = 255;
/** Largest producer epoch (int16 in the batch header); past it the identity gets a new producer id. */
export const producerEpochMax = 0x7fff;
/** Sequences per (producer, partition) wrap from this to 0 (int32 in the batch header). */
export const producerSequenceMax = 0x7fff_ffff;

/** Consumer groups (group and broadcast mode) a broker keeps, with or without members. More: INVALID_ARGUMENT. */
export const groupsMax = 10_000;
/**
 * How long a group with no members keeps its committed offsets, positions and generation (like Kafka's
 * offsets.retention.minutes): then they are deleted and the group is forgotten. Default 7 days.
 */
export const groupRetentionMsDefault = 7 * 24 * 60 * 60 * 1000;
/** Longest time between two passes looking for groups past their retention. */
export const groupExpiryCheckIntervalMsMax = 60_000;
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
 * Backlog drain (client/backlog-drain.ts): most source offsets a resume finds copied into the target
 * above the group's committed offsets (copied by an interrupted run, not yet committed). A normal
 * interruption leaves at most the drain's in-flight window plus one commit interval of copies; more
 * means the group's offsets were moved back, and the drain stops with INVALID_ARGUMENT.
 */
export const drainResumeOffsetsMax = 4_000_000;
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
/** Transactions open at once broker-wide (begun, not yet decided). One more BEGIN: TOO_MANY_TRANSACTIONS. */
export const transactionsOpenMax = 100_000;
/** Transactions one session (one producer connection) may hold open at once. More: TOO_MANY_TRANSACTIONS. */
export const transactionsOpenPerSessionMax = 10_000;
/** Bytes of half messages (batches as sent) one transaction may hold. More: TRANSACTION_TOO_LARGE. */
export const transactionHalfBytesMax = 64 * 1024 * 1024;
/** Half batches (sends) one transaction may hold. More: TRANSACTION_TOO_LARGE. */
export const transactionHalfBatchesMax = 10_000;
/** Largest half batch: it is stored wrapped in one record of `__txn_half`. */
export const transactionHalfBatchBytesMax = batchBytesMax - 64 * 1024;
/**
 * A transaction's begin record is written this long after its begin, unless a decision (or a
 * check-back) recorded it first: a crash within it forgets the undecided transaction.
 */
export const transactionBeginRecordDelayMs = 100;
/** Transaction ids one TXN_IDS reserves at most (a producer begins that many without a request). */
export const transactionIdLeaseMax = 1024;
/**
 * Id reservations one session holds (a reservation is forgotten once all its ids were begun), and
 * reserved ids not begun yet per session: past either, the oldest reservation is dropped (its unused
 * ids are then unknown: UNKNOWN_TRANSACTION).
 */
export const transactionIdLeasesPerSessionMax = 64;
export const transactionIdsReservedPerSessionMax = 16_384;
/** Decided transactions whose outcome the broker remembers (to answer a repeated decision). */
export const transactionOutcomesMax = 100_000;
/** Longest producer group name, in characters. */
export const producerGroupNameLengthMax = 255;
/** Bounds of a producer group's checkAfterMs, and its default. */
export const transactionCheckAfterMsMin = 1;
export const transactionCheckAfterMsMax = 24 * 3_600_000;
export const transactionCheckAfterMsDefault = 5_000;
/** Bounds of a producer group's maxChecks, and its default. */
export const transactionMaxChecksMax = 1000;
export const transactionMaxChecksDefault = 5;
/** Longest wait between two check-backs of one transaction (the backoff doubles up to it). */
export const transactionCheckBackoffMsMax = 60_000;
/** Longest the broker waits for a producer's answer to a check-back. */
export const transactionCheckTimeoutMs = 10_000;
/** Producer groups a broker knows connected members of at once. More: TOO_MANY_REQUESTS. */
export const producerGroupsMax = 10_000;

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

/**
 * Forward rewrite of `__delay` (broker-delay.ts, "Rewrite"): records moved to the log end per pass
 * at most, and their bytes.
 */
export const delayRewriteRecordsMax = 4096;
export const delayRewriteBytesMax = 4 * 1024 * 1024;
/**
 * Rewrite: live records of the oldest `__delay` segment counted per pass at most; a segment with
 * more (or whose live records exceed a quarter of its size) is dense and left where it is.
 */
export const delayRewriteScanRecordsMax = 65_536;
/** Rewrite: a pass moves nothing when a live record of the oldest segment is due sooner than this. */
export const delayRewriteAheadMsMin = 60_000;
/** Rewrite: pending messages moved since the last restart (wheel references redirected) at most. */
export const delayRedirectsMax = 100_000;

// Replication (src/cluster/replication/, docs/CLUSTER-REPLICATION.md).
/** Largest leader epoch (a signed 32-bit integer, as in Kafka). */
export const leaderEpochMax = 0x7fff_ffff;
/** Entries a partition's leader epoch history keeps (the oldest go first; far more than leader changes in practice). */
export const leaderEpochEntriesMax = 1024;
/** Longest a REPLICA_FETCH may long-poll on the leader. */
export const replicaFetchMaxWaitMsMax = 10_000;
/** Default: a follower that has not caught up with the leader's log end for this long leaves the ISR. */
export const replicaLagTimeMsDefault = 10_000;
/** Default: an `acks: 'all'` produce not replicated to the in-sync set within this fails with TIMEOUT. */
export const replicationTimeoutMsDefault = 30_000;
/** `acks: 'all'` produces of one partition waiting for replication at once (BACKPRESSURE past it). */
export const replicationWaitersPerPartitionMax = 100_000;
/** Bytes a follower asks for per REPLICA_FETCH. */
export const replicaFetchMaxBytesDefault = 1024 * 1024;
/** Default: how often replicated partitions' high watermarks are checkpointed into `__leader_epochs`. */
export const highWatermarkCheckpointIntervalMsDefault = 5_000;
/**
 * Free buffers a broker's followers keep for REPLICA_FETCH answer bodies (replica-receive-buffers.ts;
 * each at least replicaFetchMaxBytes): a follower gives its buffer back within the turn its answer came.
 */
export const replicaReceiveBuffersKept = 4;

/** Cluster (docs/CLUSTER.md): broker ids are integers in [0, brokerIdMax]. */
export const brokerIdMax = 2_147_483_647;
/** Cluster: the etcd session (lease) of a broker lasts this long without a keep-alive, by default. */
export const clusterSessionTimeoutMsDefault = 6_000;
/** Cluster: bounds of the session timeout (etcd leases count whole seconds, at least 1). */
export const clusterSessionTimeoutMsMin = 1_000;
export const clusterSessionTimeoutMsMax = 300_000;
/** Cluster: longest wait for one etcd request (not watches); past it: CLUSTER_UNAVAILABLE. */
export const etcdRequestTimeoutMs = 5_000;
/**
 * Cluster: after 3 failed calls in a row to an etcd host, calls to it fail at once for this long,
 * then one is let through (etcd3's per-host circuit breaker; its default of 5 s delayed recovery
 * after an etcd restart by up to 5 s).
 */
export const etcdHostHalfOpenAfterMs = 500;
/** Cluster: brokers registered at once that the control plane accepts to read (one etcd range). */
export const clusterBrokersMax = 1_000;
/** Cluster: partitions (all topics) the control plane holds in etcd; one reconcile reads them all. */
export const clusterPartitionsMax = 100_000;
/** Cluster: first and longest wait before a failed reconcile (etcd down, a refused CAS) runs again. */
export const clusterRetryMsMin = 50;
export const clusterRetryMsMax = 2_000;
/**
 * Cluster crash detection (control/crash-detector.ts): first and longest wait before a failed
 * connect to a watched broker is tried again (a closed connection is tried again at once).
 */
export const crashProbeRetryMsMin = 100;
export const crashProbeRetryMsMax = 2_000;
/** Cluster: a FETCH on another broker for a service (remote-reads/leader-fetch.ts) may take its long-poll plus this. */
export const leaderFetchSlackMs = 10_000;
/** Cluster: default replicationFactor of a new topic is min(this, live brokers). */
export const replicationFactorDefaultMax = 3;
/** Cluster: largest replicationFactor a topic may ask for. */
export const replicationFactorMax = 16;
/** Topics one METADATA request may name (docs/PROTOCOL.md, "Cluster metadata"). */
export const metadataTopicsMax = 1_000;
/** Client in a cluster: connections one client holds at most (one per broker it needs, by advertised URL). */
export const clientBrokerConnectionsMax = 64;
/** Client in a cluster: first and longest wait before a rerouted request is sent again (doubles). */
export const clientRerouteBackoffMsMin = 50;
export const clientRerouteBackoffMsMax = 1_000;
/** Client in a cluster: default bound of the time one request spends being rerouted before its error is given up. */
export const clientRerouteTimeoutMsDefault = 30_000;
/** Cluster: longest a topic admin request waits for this broker's view of etcd to show its effect (leaders elected). */
export const clusterTopicWaitMs = 10_000;
/**
 * Cluster group coordinator (cl-groups): the membership record of one group in `__consumer_offsets`
 * (members, partition ownership, generation; restored by the next coordinator after a failover) is
 * stored only up to this many bytes (estimated before encoding). A larger group is not restored: its
 * members join again after a failover, as they all did before membership was stored.
 */
export const groupMembershipRecordBytesMax = 256 * 1024;
/** Longest principal name a stored group member carries (its identity when it re-attaches). */
export const groupMemberPrincipalLengthMax = 1_024;
/**
 * Cluster group coordinator: a COMMIT_OFFSETS past what this broker's replica of the partition shows
 * (a follower's high watermark lags the leader's for a fetch round) waits this long for it before
 * failing with TIMEOUT (retriable).
 */
export const groupCommitVisibleWaitMs = 1_000;

// Idempotent producers in a cluster (cl-producers, docs/CLUSTER.md "Built: idempotent producers").
/** Cluster: producer ids one broker claims from etcd at once (one compare-and-swap per block). */
export const producerIdBlockSize = 1_000;

// Client WebSocket receive path (issue 15, 16 KiB consume: src/client/websocket-frame-reader.ts).
/**
 * Client: the reused buffer the socket reads frame headers, small payloads and the upgrade answer
 * into; a payload not wholly in it gets a buffer of its own that the socket then reads into directly.
 */
export const wsReceiveBufferBytes = 64 * 1024;
/** Client: fragments of one received WebSocket message (each is a buffer of its own); more is a PROTOCOL_ERROR. */
export const wsMessageFragmentsMax = 64;
/** Client: the status line and headers of the broker's answer to the upgrade request; longer is a PROTOCOL_ERROR. */
export const wsHandshakeResponseBytesMax = 16 * 1024;
/** Client, log consumer with reuseReceiveBuffers (receive-buffer-pool.ts): free receive buffers kept for reuse. */
export const receiveBuffersKept = 4;
/**
 * Client, log consumer with reuseReceiveBuffers: the smallest receive buffer made; larger ones are
 * the next power of two of the answer (answers of various sizes share them; at most twice the answer).
 */
export const receiveBufferBytesMin = 64 * 1024;
/**
 * Client: how long a WebSocket close handshake may take (close sent or received, the TCP connection
 * not yet gone) before the socket is destroyed and the connection counts as closed.
 */
export const wsCloseHandshakeMs = 2_000;
/** Client: unsent bytes on the socket above which a ping is not answered (a broker that pings and never reads). */
export const wsPongBacklogBytesMax = 1024 * 1024;

// --- brk-perf (session 7): storage write path ---
/**
 * Durability `always`: a new log's first segment (and the empty active segment of a log opened
 * again) has this much preallocated, written with zeros and fdatasync'd when the log opens, before
 * any append (log-segment.ts `prepareHead`): the appends of a fresh topic overwrite written, synced
 * extents, so none of their fdatasyncs converts an extent or carries zeros (issue 15: a first
 * message on a fresh topic is as fast as the thousandth). Disk: this much per `always` partition.
 */
export const preparedHeadBytes = 1024 * 1024;
// Forwarding: a service appending into a partition another broker leads (cl-fwd, src/cluster/forwarding/).
/** Forwarder: forwards of one service term sent at once (one per target partition at a time). */
export const forwardInFlightMax = 64;
/** Forwarder: forwards waiting for their turn (their partition's previous one, or a slot); more: TOO_MANY_REQUESTS. */
export const forwardQueuedMax = 16_384;
/** Forwarder: first wait before resending after a retriable error (doubles up to forwardRetryMsMax). */
export const forwardRetryMsMin = 25;
export const forwardRetryMsMax = 1_000;
/** Forwarder: one FORWARD_PRODUCE / FORWARD_SCAN request's timeout (it waits for acks 'all'). */
export const forwardRequestTimeoutMs = 30_000;
/** FORWARD_SCAN: the most bytes of matching batches in one answer (and the default). */
export const forwardScanBytesMax = 4 * 1024 * 1024;
/** FORWARD_SCAN: the most log bytes read for one answer (a longer scan goes on in the next request). */
export const forwardScanReadBytesMax = 64 * 1024 * 1024;
/**
 * Producer ids from here up are the brokers' own services' (forwarding-services.ts); in a cluster a
 * client PRODUCE naming one is refused (it could fence a service's forwards to the partition).
 */
export const serviceProducerIdMin = Number.MAX_SAFE_INTEGER - 1023;
// --- Session 7, engineer lat16 (client garbage at 16 KiB) ---
/**
 * Client producer (spare-batch-buffers.ts): free batch buffers kept at most, besides their bytes
 * (producerSpareBatchBytesMax), so finding one stays a short scan.
 */
export const producerSpareBatchBuffersMax = 64;

// Transactions in a cluster (cl-txn, src/broker/transactions/, docs/TRANSACTIONS.md "In a cluster").
/**
 * Coordinator term: ids reserved in an earlier term (a lease on the previous coordinator) that this
 * term begins, remembered so each is begun once; past this many such begins an earlier id is
 * refused (UNKNOWN_TRANSACTION; the client reserves new ids).
 */
export const transactionEarlierIdsBegunMax = 1_000_000;
// Named idempotent producers in a cluster and the producer-state rebuild (cl-names, docs/CLUSTER.md
// "Built: idempotent producers"; src/cluster/state-services/producer-names.ts).
/** Cluster: producer names (producerName) the cluster-wide registry in etcd holds at most. */
export const producerNamesMax = 10_000;
/**
 * Cluster: a name is kept at least this long after its last INIT_PRODUCER; only names unused this
 * long are removed, and only to make room for a new name when producerNamesMax are held.
 */
export const producerNameRetentionMs = 7 * 24 * 60 * 60 * 1000;
/** Cluster: names read per etcd request when the registry is loaded or swept. */
export const producerNamesPageSize = 500;
/**
 * Cluster: batch headers a new leader reads per event-loop turn when it rebuilds a partition's
 * producer state from its log (~1.5 µs each: ~6 ms per turn); it yields between slices.
 */
export const producerRebuildBatchesPerSlice = 4_096;
/** Cluster: idempotent batches that may wait for one partition's rebuild; more get BACKPRESSURE (retriable). */
export const producerRebuildWaitersMax = 1_024;
// Queues in a cluster (s8-queues, docs/CLUSTER.md "Built: shared and key_shared queues";
// src/cluster/remote-reads/).
/**
 * Cluster: bytes of batches one remote partition reader caches for its queue partition (from the
 * ack floor up); at the bound it stops fetching until acks move the floor. At least one batch is
 * always kept, whatever its size.
 */
export const queueRemoteCacheBytesMax = 16 * 1024 * 1024;
/** Cluster: bytes all remote partition readers of a broker cache together. */
export const queueRemoteCacheBytesTotalMax = 256 * 1024 * 1024;
/** Cluster: queue partitions with a source at once (local, or a remote partition reader). */
export const queueRemoteReadersMax = 4_096;
/** Cluster: how long one remote reader's FETCH waits at the leader for new data (long-poll). */
export const queueRemoteFetchWaitMs = 5_000;
/** Cluster: bytes one remote reader's FETCH asks for at most. */
export const queueRemoteFetchBytesMax = 1024 * 1024;

// Session 8, cluster loose ends (s8-clfix).
/**
 * Client in a cluster: how long a request naming a topic that no METADATA answer lists yet is retried
 * on UNKNOWN_TOPIC / UNKNOWN_PARTITION (a broker whose view of etcd lags behind a topic just created),
 * at most the reroute timeout. A topic that does not exist fails with UNKNOWN_TOPIC after this.
 */
export const clientUnknownTopicWaitMs = 2_000;

// Session 8, delayed messages inside a transaction in a cluster (s8-dtxn).
/**
 * Cluster: how long after a commit's decision the delay service keeps recognising the transaction's
 * delayed batches (per transaction id and half index; their `__delay` segments are kept as long): a
 * coordinator finishing the commit after a failover sends them again within it. A commit finished
 * later than this (the transaction coordinator offline that long) could schedule a batch twice.
 */
export const delayTransactionKeepMs = 3_600_000;
/**
 * Cluster: transactions whose delayed batches the delay service keeps recognising at once (the bound
 * of that memory, ~100 bytes each). Past it a committed delayed batch of a new transaction is refused
 * with BACKPRESSURE (the coordinator retries it) until entries older than delayTransactionKeepMs go.
 * The default of BrokerOptions.delayTransactionsKeptMax.
 */
export const delayTransactionsKeptMax = 100_000;
/** Cluster: a coordinator's wait between two hand-overs of a committed delayed batch (doubling to the max). */
export const transactionDelayRetryMsMin = 50;
export const transactionDelayRetryMsMax = 1_000;
