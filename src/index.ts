/**
 * The `spillway` package: the embedded engine (`Broker`) and the client (`Spillway`, also alone from
 * `spillway/client`), plus the storage engine and the record-batch format for those who embed them.
 */
export * from './broker/index.js';
export * from './client/index.js';
export * from './errors.js';
export * from './format/batch-header.js';
export * from './format/crc32c.js';
export * from './format/record-batch.js';
export * as limits from './limits.js';
export type { BrokerServer } from './server/server.js';
export { Broker, type ListenOptions } from './spillway-broker.js';
export type { RecoveryReport, TruncationReport } from './storage/log-loader.js';
export type { AppendResult, LogStore, ReadResult, RetentionResult } from './storage/log-store.js';
export { PartitionLog, type PartitionLogOptions } from './storage/partition-log.js';
