/**
 * `BrokerApi.transactions`: transactional messages (half messages, commit/rollback, check-back), as
 * the protocol layer and the HTTP API see them. The broker implements it in
 * src/broker/transactions/broker-transactions.ts; docs/PROTOCOL.md ("Transactions") and
 * docs/TRANSACTIONS.md have the semantics.
 */
import type { Session } from './session.js';

export type TransactionDecision = 'commit' | 'rollback';
/** What a producer answers to a check-back. */
export type CheckAnswer = TransactionDecision | 'unknown';

export interface BeginTransactionRequest {
  /** The producer group: check-backs go to any connected member of it. */
  group: string;
  /** Undecided this long after begin: the broker asks the group. Default 5 000. */
  checkAfterMs?: number;
  /** Check-backs made before the broker rolls back by itself. Default 5. */
  maxChecks?: number;
}

export interface SendHalfResult {
  /** Offset of the half in `__txn_half`. */
  halfOffset: number;
  /** Records of the batch. */
  records: number;
}

/** Several halves stored by one TXN_SEND: their offsets in `__txn_half`, in the order sent. */
export interface SendHalvesResult {
  halfOffsets: number[];
  /** Records of all the batches. */
  records: number;
}

/** Transaction ids reserved for one session (TXN_IDS): `from` to `from + count - 1`. */
export interface IdLease {
  from: number;
  count: number;
}

export interface EndTransactionResult {
  id: number;
  outcome: 'committed' | 'rolled-back';
  /** True when this decision had already been applied (a repeated commit or rollback). */
  duplicate: boolean;
  /** Who decided: the producer (END), a producer's answer to a check-back, or the broker (maxChecks unanswered). */
  decidedBy: 'producer' | 'check-back' | 'timeout';
  /** Messages made visible (committed) or discarded (rolled back). */
  messages: number;
}

/** One open (or committing) transaction, for `spillway txn list`. */
export interface TransactionInfo {
  id: number;
  group: string;
  state: 'open' | 'committing';
  beganAtMs: number;
  ageMs: number;
  checks: number;
  maxChecks: number;
  nextCheckAtMs: number;
  /** Half batches and messages held. */
  halves: number;
  messages: number;
  halfBytes: number;
}

export interface TransactionStats {
  open: number;
  committing: number;
  committed: number;
  rolledBack: number;
  /** Rolled back by the broker after maxChecks check-backs without a decision. */
  timedOut: number;
  checksSent: number;
  /** Check-backs with no member of the group connected. */
  checksWithoutProducer: number;
  checkAnswers: { commit: number; rollback: number; unknown: number; failed: number };
  /** Bytes of half batches of open transactions. */
  halfBytes: number;
}

export interface TransactionService {
  /** Makes the session a member of producer group `group`: check-backs of the group may go to it. */
  register(session: Session, group: string): void;
  begin(session: Session, request: BeginTransactionRequest): Promise<{ id: number }>;
  /** Reserves `count` ids for the session (durably): each is begun by its first send or end naming it with `begin`. */
  reserveIds(session: Session, group: string, count: number): Promise<IdLease>;
  /** Begins reserved id `id` of this session if not begun yet; nothing when live already or not such an id. */
  beginLeased(session: Session, id: number, request: BeginTransactionRequest): void;
  /** Stores one producer batch for (topic, partition) as a half message of transaction `id`. */
  send(
    session: Session,
    id: number,
    topic: string,
    partition: number,
    batch: Uint8Array,
    /** The request's number in the transaction (TransactionSendRequest.seq): a repeat is not stored twice. */
    seq?: number | null,
  ): Promise<SendHalfResult>;
  /** Several batches, one per part, back to back in `body`: stored in that order. */
  sendMany(
    session: Session,
    id: number,
    parts: ReadonlyArray<{ topic: string; partition: number }>,
    body: Uint8Array,
    seq?: number | null,
  ): Promise<SendHalvesResult>;
  end(session: Session, id: number, decision: TransactionDecision): Promise<EndTransactionResult>;
  /** The producer group of open or committing transaction `id`; null when no such transaction is live. */
  groupOf(id: number): string | null;
  /** Open and committing transactions, oldest first. */
  list(): TransactionInfo[];
  stats(): TransactionStats;
}
