/**
 * The `spillway` package: the embedded engine and (from `spillway/client`) the client.
 * Until the broker engine lands, this exposes the storage engine and the record-batch format.
 */
export * from './errors.js';
export * from './format/batch-header.js';
export * from './format/crc32c.js';
export * from './format/record-batch.js';
export * as limits from './limits.js';
export type { RecoveryReport, TruncationReport } from './storage/log-loader.js';
export type { AppendResult, LogStore, ReadResult, RetentionResult } from './storage/log-store.js';
export { PartitionLog, type PartitionLogOptions } from './storage/partition-log.js';
export type { Durability } from './storage/sync-scheduler.js';
