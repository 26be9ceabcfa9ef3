/**
 * Transaction ids reserved for one connection (TXN_IDS, docs/TRANSACTIONS.md "Begin without a
 * request"), shared by every transactional producer on it: `take` hands out the next reserved id,
 * reserving a new block when none is left (16 ids first, doubling up to transactionIdLeaseMax; one
 * TXN_IDS at a time, the callers waiting share it). The broker knows the reservation only on the
 * session that made it: after a reconnect the ids left are dropped and a new block is reserved.
 * Against a broker without TXN_IDS (UNKNOWN_OPCODE) `take` resolves null: begin with TXN_BEGIN.
 */
import { SpillwayError } from '../errors.js';
import { transactionIdLeaseMax } from '../limits.js';
import { Opcode } from '../protocol/opcodes.js';
import type { Transport } from './transport.js';
import { integerOf } from './wire.js';

const leaseSizeFirst = 16;

export class TransactionIds {
  private readonly transport: Transport;
  private sessionId: number | null = null;
  private next = 0;
  private end = 0;
  private leasing: Promise<void> | null = null;
  private leaseSize = leaseSizeFirst;
  private unsupported = false;

  constructor(transport: Transport) {
    this.transport = transport;
  }

  /** The next reserved id of this connection if one is left now (no request needed), else undefined. */
  takeNow(): number | undefined {
    if (this.next < this.end && this.sessionId === this.transport.hello.sessionId) return this.next++;
    return undefined;
  }

  /** The next reserved id of this connection; null when the broker cannot reserve ids. */
  async take(group: string): Promise<number | null> {
    while (!this.unsupported) {
      if (this.next < this.end && this.sessionId === this.transport.hello.sessionId) return this.next++;
      try {
        await this.reserve(group);
      } catch (error) {
        if (!(error instanceof SpillwayError && error.code === 'UNKNOWN_OPCODE')) throw error;
        this.unsupported = true;
      }
    }
    return null;
  }

  private reserve(group: string): Promise<void> {
    if (this.leasing === null) {
      const sessionId = this.transport.hello.sessionId;
      const count = this.leaseSize;
      this.leasing = this.transport
        .request(Opcode.txnIds, { group, count })
        .then((response) => {
          const from = integerOf(response.header, 'from', 'TXN_IDS');
          this.sessionId = sessionId;
          this.next = from;
          this.end = from + integerOf(response.header, 'count', 'TXN_IDS');
          this.leaseSize = Math.min(count * 2, transactionIdLeaseMax);
        })
        .finally(() => {
          this.leasing = null;
        });
    }
    return this.leasing;
  }
}

const pools = new WeakMap<Transport, TransactionIds>();

/** The id reservation of a connection (made on first use). */
export function transactionIdsOf(transport: Transport): TransactionIds {
  let ids = pools.get(transport);
  if (ids === undefined) {
    ids = new TransactionIds(transport);
    pools.set(transport, ids);
  }
  return ids;
}
