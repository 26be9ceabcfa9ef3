/**
 * One error hierarchy for Spillway. Every operating error (bad input, full disk, corruption) is a
 * `SpillwayError` with a stable `code` (every code is documented in docs/PROTOCOL.md, section
 * "Error codes"; test/protocol/error-codes.test.ts checks it) and a `retriable` flag telling a client
 * whether the same request may succeed later.
 * Programmer errors (broken invariants) are plain assertions and crash.
 */
export type ErrorCode =
  | 'INVALID_ARGUMENT'
  | 'INVALID_BATCH'
  | 'CORRUPT_BATCH'
  | 'CORRUPT_LOG'
  | 'PARTITION_DAMAGED'
  | 'OFFSET_OUT_OF_RANGE'
  | 'LOG_CLOSED'
  | 'LOG_TRUNCATED'
  | 'STORAGE_FULL'
  | 'STORAGE_IO'
  | 'TOO_MANY_OPEN_FILES'
  | 'BACKPRESSURE'
  | 'NATIVE_UNAVAILABLE'
  | 'UNKNOWN_TOPIC'
  | 'UNKNOWN_PARTITION'
  | 'TOPIC_EXISTS'
  | 'INVALID_TOPIC_NAME'
  | 'BROKER_CLOSING'
  | 'PROTOCOL_ERROR'
  | 'UNSUPPORTED_VERSION'
  | 'UNKNOWN_OPCODE'
  | 'FRAME_TOO_LARGE'
  | 'TOO_MANY_REQUESTS'
  | 'TIMEOUT'
  | 'CONNECTION_CLOSED'
  | 'NO_HANDLER'
  | 'HANDLER_FAILED'
  | 'ORIGIN_NOT_ALLOWED'
  | 'HOST_NOT_ALLOWED'
  | 'UNKNOWN_GROUP'
  | 'UNKNOWN_MEMBER'
  | 'FENCED_GENERATION'
  | 'RECEIPT_EXPIRED'
  | 'RECEIPT_INVALID'
  | 'GROUP_NOT_EMPTY'
  | 'IDEMPOTENCY_STORE'
  | 'DUPLICATE_DELIVERY'
  | 'UNKNOWN_TRANSACTION'
  | 'TRANSACTION_COMMITTED'
  | 'TRANSACTION_ROLLED_BACK'
  | 'TOO_MANY_TRANSACTIONS'
  | 'TRANSACTION_TOO_LARGE'
  | 'PRODUCER_FENCED'
  | 'OUT_OF_ORDER_SEQUENCE'
  | 'UNKNOWN_PRODUCER_ID'
  | 'UNAUTHENTICATED'
  | 'FORBIDDEN'
  | 'NOT_LEADER'
  | 'FENCED_LEADER_EPOCH'
  | 'NOT_ENOUGH_REPLICAS'
  | 'NOT_COORDINATOR'
  | 'CLUSTER_UNAVAILABLE'
  | 'BROKER_ID_IN_USE'
  | 'SERVICE_FENCED'
  | 'INTERNAL';

/** Whether a request failing with this code may succeed if sent again later. */
export const retriableByCode: Readonly<Record<ErrorCode, boolean>> = {
  INVALID_ARGUMENT: false,
  INVALID_BATCH: false,
  CORRUPT_BATCH: true, // corrupted in transit: a resend carries fresh bytes
  CORRUPT_LOG: false,
  PARTITION_DAMAGED: false, // until an operator repairs it (docs/OPERATIONS.md)
  OFFSET_OUT_OF_RANGE: false,
  LOG_CLOSED: true,
  LOG_TRUNCATED: true,
  STORAGE_FULL: true,
  STORAGE_IO: false,
  TOO_MANY_OPEN_FILES: false,
  BACKPRESSURE: true,
  NATIVE_UNAVAILABLE: false,
  UNKNOWN_TOPIC: false,
  UNKNOWN_PARTITION: false,
  TOPIC_EXISTS: false,
  INVALID_TOPIC_NAME: false,
  BROKER_CLOSING: true,
  PROTOCOL_ERROR: false,
  UNSUPPORTED_VERSION: false,
  UNKNOWN_OPCODE: false,
  FRAME_TOO_LARGE: false,
  TOO_MANY_REQUESTS: true,
  TIMEOUT: true,
  CONNECTION_CLOSED: true,
  NO_HANDLER: false,
  HANDLER_FAILED: true, // the client's handler may succeed when asked again
  ORIGIN_NOT_ALLOWED: false,
  HOST_NOT_ALLOWED: false,
  UNKNOWN_GROUP: false,
  UNKNOWN_MEMBER: false, // the member was removed (left, session closed or timed out): join again
  FENCED_GENERATION: false, // the partition is no longer this member's: take the new assignment
  RECEIPT_EXPIRED: false, // the delivery is over: the message comes again with a new receipt
  RECEIPT_INVALID: false,
  GROUP_NOT_EMPTY: false, // stop the group's members first (backlog drain)
  IDEMPOTENCY_STORE: true, // the consumer's idempotency store failed (I/O, connection): the message comes again
  DUPLICATE_DELIVERY: false, // the id was already recorded: the handler's transaction rolled back
  UNKNOWN_TRANSACTION: false, // never begun here, or its outcome is no longer remembered
  TRANSACTION_COMMITTED: false, // a rollback or send came after the commit
  TRANSACTION_ROLLED_BACK: false, // a commit or send came after the rollback (by the producer, a check-back or the timeout)
  TOO_MANY_TRANSACTIONS: true, // once others are decided
  TRANSACTION_TOO_LARGE: false,
  PRODUCER_FENCED: false, // a newer instance of the same producer identity registered: this one stops
  OUT_OF_ORDER_SEQUENCE: false, // the batch does not follow the producer's last one on the partition
  UNKNOWN_PRODUCER_ID: false, // expired, evicted or never assigned: register again (INIT_PRODUCER)
  UNAUTHENTICATED: false, // a missing, unknown or wrong token: retrying the same one cannot help
  FORBIDDEN: false, // the principal's access rules do not allow the request
  NOT_LEADER: true, // a cluster: refresh which broker leads the partition and send there
  FENCED_LEADER_EPOCH: true, // a cluster: the request's leader epoch is not the partition's current one; refresh
  NOT_ENOUGH_REPLICAS: true, // a cluster: fewer in-sync replicas than minInSyncReplicas, until followers catch up
  NOT_COORDINATOR: true, // a cluster: the service (groups, queues, transactions, producer ids, delay) runs on the leader of its internal partition; refresh and send there
  CLUSTER_UNAVAILABLE: true, // etcd did not answer in time: it may be back later
  BROKER_ID_IN_USE: false, // another live broker holds the id: a configuration mistake
  SERVICE_FENCED: false, // a cluster: a newer term of the forwarding service (delay, transactions) runs elsewhere: this one stops
  INTERNAL: false,
};

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(retriableByCode, value);
}

export interface SpillwayErrorOptions {
  cause?: unknown;
  retriable?: boolean;
}

export class SpillwayError extends Error {
  readonly code: ErrorCode;
  readonly retriable: boolean;

  constructor(code: ErrorCode, message: string, options: SpillwayErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'SpillwayError';
    this.code = code;
    this.retriable = options.retriable ?? retriableByCode[code];
  }
}

/** A value given by a caller is out of its allowed range or of the wrong kind. */
export class InvalidArgumentError extends SpillwayError {
  constructor(message: string) {
    super('INVALID_ARGUMENT', message);
    this.name = 'InvalidArgumentError';
  }
}

/** A record batch is malformed: bad length, magic, counts or limits (not a checksum problem). */
export class InvalidBatchError extends SpillwayError {
  constructor(message: string) {
    super('INVALID_BATCH', message);
    this.name = 'InvalidBatchError';
  }
}

/** A record batch's CRC32C does not match its bytes. */
export class CorruptBatchError extends SpillwayError {
  constructor(message: string) {
    super('CORRUPT_BATCH', message);
    this.name = 'CorruptBatchError';
  }
}

/**
 * A batch stored in a partition log fails its CRC32C check when read (bit rot after it was
 * acknowledged): code CORRUPT_LOG, not retriable. Names the partition and the batch's offsets as its
 * header gives them; reading from `nextOffset` goes past it.
 */
export class CorruptStoredBatchError extends SpillwayError {
  readonly topic: string;
  readonly partition: number;
  readonly baseOffset: number;
  /** Offset after the damaged batch (where a reader may resume). */
  readonly nextOffset: number;

  constructor(topic: string, partition: number, baseOffset: number, nextOffset: number, reason: string) {
    super(
      'CORRUPT_LOG',
      `corrupt stored batch in ${topic}/${partition} at offsets ${baseOffset}..${nextOffset - 1}: ${reason}; read from offset ${nextOffset} to skip it`,
    );
    this.name = 'CorruptStoredBatchError';
    this.topic = topic;
    this.partition = partition;
    this.baseOffset = baseOffset;
    this.nextOffset = nextOffset;
  }
}

/** Data already acknowledged and checkpointed on disk is damaged. Names the file and byte position. */
export class CorruptLogError extends SpillwayError {
  readonly file: string;
  readonly position: number;

  constructor(file: string, position: number, reason: string) {
    super('CORRUPT_LOG', `corrupt log data in ${file} at position ${position}: ${reason}`);
    this.name = 'CorruptLogError';
    this.file = file;
    this.position = position;
  }
}

/**
 * The partition was stopped at open because its data on disk is damaged or missing (a bit flip in
 * history, a lost segment or directory): every request to it fails with this code until an operator
 * repairs it (`spillway repair TOPIC PARTITION`, docs/OPERATIONS.md). The other partitions serve.
 */
export class PartitionDamagedError extends SpillwayError {
  readonly topic: string;
  readonly partition: number;

  constructor(topic: string, partition: number, detail: string) {
    super(
      'PARTITION_DAMAGED',
      `partition ${topic}/${partition} is stopped: ${detail} (run 'spillway repair ${topic} ${partition}')`,
    );
    this.name = 'PartitionDamagedError';
    this.topic = topic;
    this.partition = partition;
  }
}

/** A read asked for an offset before the log start or past the log end. */
export class OffsetOutOfRangeError extends SpillwayError {
  constructor(offset: number, logStartOffset: number, logEndOffset: number) {
    super('OFFSET_OUT_OF_RANGE', `offset ${offset} is out of range [${logStartOffset}, ${logEndOffset}]`);
    this.name = 'OffsetOutOfRangeError';
  }
}

export class LogClosedError extends SpillwayError {
  constructor(what: string) {
    super('LOG_CLOSED', `${what} is closed`);
    this.name = 'LogClosedError';
  }
}

/** The log was truncated (replication) before an append waiting for its sync was durable. */
export class LogTruncatedError extends SpillwayError {
  constructor(message: string) {
    super('LOG_TRUNCATED', message, { retriable: true });
    this.name = 'LogTruncatedError';
  }
}

/** The disk is full (ENOSPC/EDQUOT) while preallocating or flushing. Retriable once space is freed. */
export class StorageFullError extends SpillwayError {
  constructor(message: string, cause?: unknown) {
    super('STORAGE_FULL', message, { cause, retriable: true });
    this.name = 'StorageFullError';
  }
}

/** An I/O error (EIO and the like) while writing, preallocating or flushing. */
export class StorageIoError extends SpillwayError {
  constructor(message: string, cause?: unknown) {
    super('STORAGE_IO', message, { cause, retriable: false });
    this.name = 'StorageIoError';
  }
}

/** The process ran out of file descriptors (EMFILE/ENFILE): raise `ulimit -n`, or use fewer partitions. */
export class TooManyOpenFilesError extends SpillwayError {
  constructor(message: string, cause?: unknown) {
    super('TOO_MANY_OPEN_FILES', message, { cause, retriable: false });
    this.name = 'TooManyOpenFilesError';
  }
}

/** Too much work is queued; try again later. */
export class BackpressureError extends SpillwayError {
  constructor(message: string) {
    super('BACKPRESSURE', message, { retriable: true });
    this.name = 'BackpressureError';
  }
}

/** Turns a Node.js system error from a file operation into a typed storage error. */
export function storageErrorFrom(operation: string, error: unknown): SpillwayError {
  if (error instanceof SpillwayError) return error;
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  const detail = error instanceof Error ? error.message : String(error);
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new StorageFullError(`${operation}: no space left on device (${detail})`, error);
  }
  if (code === 'EMFILE' || code === 'ENFILE') {
    return new TooManyOpenFilesError(`${operation}: too many open files (${detail})`, error);
  }
  return new StorageIoError(`${operation}: ${detail}`, error);
}

/** No topic of that name exists (never created, or deleted). */
export class UnknownTopicError extends SpillwayError {
  readonly topic: string;

  constructor(topic: string) {
    super('UNKNOWN_TOPIC', `unknown topic '${topic}'`);
    this.name = 'UnknownTopicError';
    this.topic = topic;
  }
}

/** The topic exists but has no partition of that number. */
export class UnknownPartitionError extends SpillwayError {
  readonly topic: string;
  readonly partition: number;

  constructor(topic: string, partition: number, partitionCount: number) {
    super(
      'UNKNOWN_PARTITION',
      `topic '${topic}' has no partition ${partition} (it has partitions 0..${partitionCount - 1})`,
    );
    this.name = 'UnknownPartitionError';
    this.topic = topic;
    this.partition = partition;
  }
}

/** A topic of that name already exists. */
export class TopicExistsError extends SpillwayError {
  readonly topic: string;

  constructor(topic: string) {
    super('TOPIC_EXISTS', `topic '${topic}' already exists`);
    this.name = 'TopicExistsError';
    this.topic = topic;
  }
}

/** A topic name breaks the naming rules (1..249 characters of [a-zA-Z0-9._-], not '.' or '..'). */
export class InvalidTopicNameError extends SpillwayError {
  constructor(message: string) {
    super('INVALID_TOPIC_NAME', message);
    this.name = 'InvalidTopicNameError';
  }
}

/** The broker is closing or closed and accepts no new requests. */
export class BrokerClosingError extends SpillwayError {
  constructor() {
    super('BROKER_CLOSING', 'the broker is closing');
    this.name = 'BrokerClosingError';
  }
}

/**
 * The consumer-side idempotency store (client/idempotency/) failed: a SQLite or Redis error, a
 * missing driver, a store used after close. Retriable: the message is nacked and comes again.
 */
export class IdempotencyStoreError extends SpillwayError {
  constructor(message: string, options: SpillwayErrorOptions = {}) {
    super('IDEMPOTENCY_STORE', message, options);
    this.name = 'IdempotencyStoreError';
  }
}

/**
 * A handler's store transaction (sqliteStore's `context.transaction`) found the message's id already
 * recorded (another process or delivery committed it first): the transaction was rolled back, and
 * consumer.run acks the message as a duplicate.
 */
export class DuplicateDeliveryError extends SpillwayError {
  readonly idempotencyKey: string;

  constructor(idempotencyKey: string) {
    super('DUPLICATE_DELIVERY', `idempotency key ${JSON.stringify(idempotencyKey)} is already recorded`);
    this.name = 'DuplicateDeliveryError';
    this.idempotencyKey = idempotencyKey;
  }
}

/** An idempotent batch (or INIT_PRODUCER) from an epoch older than the producer identity's current one. */
export class ProducerFencedError extends SpillwayError {
  constructor(message: string) {
    super('PRODUCER_FENCED', message);
    this.name = 'ProducerFencedError';
  }
}

/** An idempotent batch whose sequence neither follows the producer's last batch nor repeats a recent one. */
export class OutOfOrderSequenceError extends SpillwayError {
  constructor(message: string) {
    super('OUT_OF_ORDER_SEQUENCE', message);
    this.name = 'OutOfOrderSequenceError';
  }
}

/** An idempotent batch from a producer id the broker does not hold (expired, evicted, never assigned). */
export class UnknownProducerIdError extends SpillwayError {
  constructor(message: string) {
    super('UNKNOWN_PRODUCER_ID', message);
    this.name = 'UnknownProducerIdError';
  }
}

/**
 * Cluster mode (src/cluster/control/): etcd could not be reached, or did not answer within
 * `etcdRequestTimeoutMs`. Retriable: etcd may be back later.
 */
export class ClusterUnavailableError extends SpillwayError {
  constructor(message: string, options: SpillwayErrorOptions = {}) {
    super('CLUSTER_UNAVAILABLE', message, options);
    this.name = 'ClusterUnavailableError';
  }
}

/** Cluster mode: the broker id is registered by another live broker (two processes given the same id). */
export class BrokerIdInUseError extends SpillwayError {
  constructor(message: string) {
    super('BROKER_ID_IN_USE', message);
    this.name = 'BrokerIdInUseError';
  }
}
