/** The broker engine: what `Broker.open()` returns and the API front ends use. */
export type {
  BrokerApi,
  FetchOptions,
  FetchResult,
  ListTopicsOptions,
  MessageService,
  OffsetSpec,
  PartitionDescription,
  ProduceResult,
  TopicConfig,
  TopicDescription,
  TopicService,
} from '../protocol/broker-api.js';
export type {
  Principal,
  ServerRequestOptions,
  Session,
  SessionCloseHook,
  SessionInfo,
  SessionKind,
} from '../protocol/session.js';
export { BrokerEngine, type RetentionPassResult } from './broker-engine.js';
export type { BrokerOptions } from './broker-options.js';
export type { BrokerOpenReport, PartitionRecovery } from './open-report.js';
export { type SessionHookFailureListener, SessionRegistry } from './session-registry.js';
