/**
 * `spillway/client`: the client alone. It loads without the native addon, mmap or uWebSockets:
 * nothing under src/client imports src/native.ts, src/storage/, src/broker/ or src/server/
 * (test/client/import-isolation.test.ts checks it). Its dependency is `msgpackr` (its WebSocket
 * client is its own: websocket-connection.ts); piscina (consumer.run({ worker })) and better-sqlite3
 * (sqliteStore given a path) are loaded only when used.
 */
export {
  DuplicateDeliveryError,
  type ErrorCode,
  IdempotencyStoreError,
  isErrorCode,
  retriableByCode,
  SpillwayError,
  type SpillwayErrorOptions,
} from '../errors.js';
export type {
  CreateTopicOptions,
  OffsetSpec,
  PartitionDescription,
  ReplicaPlacement,
  TopicConfig,
  TopicDescription,
} from '../protocol/broker-api.js';
export type { Durability } from '../protocol/types.js';
export { Admin } from './admin.js';
export {
  type DrainOptions,
  type DrainProgress,
  type DrainResult,
  drainBacklog,
  drainDefaults,
} from './backlog-drain.js';
export {
  Consumer,
  type ConsumerOptions,
  consumerDefaults,
  type SkippedBatch,
  type SkippedBatches,
  type StartPosition,
} from './consumer.js';
export type { MessageHandler, RunOptions, RunOrdering, RunSummary } from './consumer-run.js';
export { GroupConsumer, type GroupConsumerOptions, groupConsumerDefaults } from './group-consumer.js';
export { defaultIdempotencyKey, type IdempotencyKeyFunction } from './idempotency/idempotency-key.js';
export type {
  HandlingOutcome,
  IdempotencyHandling,
  IdempotencyStore,
  RunContext,
} from './idempotency/idempotency-store.js';
export {
  MemoryStore,
  type MemoryStoreOptions,
  memoryStore,
  memoryStoreDefaults,
} from './idempotency/memory-store.js';
export {
  type RedisCommandClient,
  RedisStore,
  type RedisStoreOptions,
  redisStore,
  redisStoreDefaults,
} from './idempotency/redis-store.js';
export {
  type SqliteDatabase,
  type SqliteHandlingContext,
  SqliteStore,
  type SqliteStoreOptions,
  sqliteStore,
  sqliteStoreDefaults,
} from './idempotency/sqlite-store.js';
export { ConsumedMessage, type MessageHeaders, type MessageSettler, type NackOptions } from './message.js';
export type { WorkerMessage } from './pool-batch.js';
export {
  type MessageBytes,
  Producer,
  type ProducerMessage,
  type ProducerOptions,
  producerDefaults,
  type SendResult,
} from './producer.js';
export type { ServerRequest, ServerRequestAnswer, ServerRequestHandler } from './server-requests.js';
export { Spillway, type SpillwayOptions, spillwayDefaults } from './spillway.js';
export {
  type CheckAnswer,
  type CheckTransaction,
  type EndTransactionResult,
  Transaction,
  TransactionalProducer,
  type TransactionalProducerOptions,
  type TransactionCheck,
  type TransactionSendResult,
} from './transactional-producer.js';
export type { HelloInfo } from './transport.js';
