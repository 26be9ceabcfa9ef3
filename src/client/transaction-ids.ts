/**
 * Transaction ids reserved for one connection (TXN_IDS, docs/TRANSACTIONS.md "Begin without a
 * request"), shared by every transactional producer on it: `take` hands out the next reserved id,
 * reserving a new block when none is left (16 ids first, doubling up to transactionIdLeaseMax; one
 * TXN_IDS at a time, the callers waiting share it). Once half of a block is taken, the next block is
 * reserved ahead (one spare block at most), so a steady stream of begins never waits for a TXN_IDS
 * round trip. The broker knows the reservation only on the
 * session that made it: after a reconnect the ids left are dropped and a new block is reserved.
 * Against a broker without TXN_IDS (UNKNOWN_OPCODE) `take` resolves null: begin with TXN_BEGIN.
 */
import { SpillwayError } from '../errors.js';
import { transactionIdLeaseMax } from '../limits.js';
import { Opcode } from '../protocol/opcodes.js';
import type { Transport } from './transport.js';
import { integerOf } from './wire.js';

const leaseSizeFirst = 16;
const ignore = (): void => undefined;

export class TransactionIds {
  private readonly transport: Transport;
  private sessionId: number | null = null;
  private next = 0;
  private end = 0;
  /** A block reserved ahead (of session `spareSession`), taken once the current one is used up. */
  private spareFrom = 0;
  private spareEnd = 0;
  private spareSession: number | null = null;
  /** Reserve ahead once fewer ids than this are left in the current block. */
  private refillBelow = 0;
  private leasing: Promise<void> | null = null;
  private leaseSize = leaseSizeFirst;
  private unsupported = false;

  constructor(transport: Transport) {
    this.transport = transport;
  }

  /**
   * The next reserved id of this connection if one is left now (no request needed), else undefined.
   * `group`: the producer group a block reserved ahead is asked for.
   */
  takeNow(group: string): number | undefined {
    const session = this.transport.hello.sessionId;
    if (this.next >= this.end || this.sessionId !== session) {
      if (this.spareSession !== session || this.spareFrom >= this.spareEnd) return undefined;
      this.sessionId = session;
      this.next = this.spareFrom;
      this.end = this.spareEnd;
      this.spareSession = null;
    }
    const id = this.next++;
    if (
      this.end - this.next < this.refillBelow &&
      this.leasing === null &&
      this.spareSession !== session &&
      !this.unsupported
    ) {
      // Ahead of need: a failure here is met again (and reported) by the `take` that needs it.
      this.reserve(group).catch(ignore);
    }
    return id;
  }

  /** The next reserved id of this connection; null when the broker cannot reserve ids. */
  async take(group: string): Promise<number | null> {
    while (!this.unsupported) {
      const id = this.takeNow(group);
      if (id !== undefined) return id;
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
          const end = from + integerOf(response.header, 'count', 'TXN_IDS');
          if (this.next < this.end && this.sessionId === sessionId) {
            // Reserved ahead: the current block still has ids.
            this.spareSession = sessionId;
            this.spareFrom = from;
            this.spareEnd = end;
          } else {
            this.sessionId = sessionId;
            this.next = from;
            this.end = end;
          }
          this.refillBelow = Math.floor((end - from) / 2);
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
