/**
 * The `spillway` package: the embedded engine (`Broker`) and the client (`Spillway`, also alone from
 * `spillway/client`), plus the storage engine and the record-batch format for those who embed them,
 * and the clock and in-memory log a test of an embedding application can hand to `Broker.open()`.
 *
 * Importing it registers the native CRC32C with the client (client/client-crc32c.ts): the engine
 * loads the addon anyway, and `spillway/client` alone keeps its pure TypeScript one.
 */
import { useClientCrc32c } from './client/client-crc32c.js';
import { crc32cImplementation, crc32c as nativeCrc32c } from './native.js';

useClientCrc32c(nativeCrc32c, `native ${crc32cImplementation()}`);

export * from './broker/index.js';
export * from './client/index.js';
export { type Clock, type ClockTimer, ManualClock, systemClock, type TimerOptions } from './clock.js';
export * from './errors.js';
export * from './format/batch-header.js';
export * from './format/crc32c.js';
export * from './format/record-batch.js';
export * as limits from './limits.js';
export {
  type AccessRule,
  operations as accessOperations,
  resourceTypes as accessResourceTypes,
} from './protocol/access-control.js';
export {
  type AuthConfig,
  loadAuthFile,
  type PrincipalQuotas,
  parseAuthConfig,
} from './server/auth/auth-file.js';
export { hashSecret, newToken } from './server/auth/token-hash.js';
export type { BrokerServer } from './server/server.js';
export { Broker, type ListenOptions } from './spillway-broker.js';
export { InlineSyncBudget, inlineSyncBudget } from './storage/inline-sync.js';
export type { RecoveryReport, TruncationReport } from './storage/log-loader.js';
export type {
  AppendResult,
  LogFactory,
  LogOpenRequest,
  LogStore,
  ReadResult,
  RetentionResult,
} from './storage/log-store.js';
export { MemoryLog, type MemoryLogOptions, memoryLogFactory } from './storage/memory-log.js';
export { PartitionLog, type PartitionLogOptions } from './storage/partition-log.js';
