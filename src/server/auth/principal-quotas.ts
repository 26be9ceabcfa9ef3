/**
 * Per-principal quotas (docs/SECURITY.md, "Quotas"): produce and fetch bytes per second as token
 * buckets (capacity one second of the rate), and WebSocket connections held at once.
 *
 * Throttling delays, it does not refuse: a request is served, its bytes are taken from the bucket
 * (which may go into debt), and its answer is held back until the debt is paid at the quota's rate
 * (at most quotaThrottleMsMax). A client that waits for its answers (every Spillway client does,
 * through its in-flight window) is thereby slowed to its quota. The delay is counted in metrics
 * (`spillway_quota_throttle_seconds_total`). Connections over maxConnections are refused at HELLO
 * with TOO_MANY_REQUESTS and closed.
 * Single-threaded (the event loop); state per principal lives while the broker runs.
 */
import type { Clock } from '../../clock.js';
import type { PrincipalQuotas } from './auth-file.js';

/** Longest a single answer is held back for a quota (the rest of the debt waits for the next one). */
export const quotaThrottleMsMax = 30_000;

export type QuotaKind = 'produce' | 'fetch';

class TokenBucket {
  private tokens: number;
  private updatedMs: number;

  constructor(
    private readonly bytesPerSecond: number,
    nowMs: number,
  ) {
    this.tokens = bytesPerSecond;
    this.updatedMs = nowMs;
  }

  /** Takes `bytes`; returns how long the caller must wait for the bucket to be out of debt. */
  charge(bytes: number, nowMs: number): number {
    this.tokens = Math.min(
      this.bytesPerSecond,
      this.tokens + ((nowMs - this.updatedMs) / 1000) * this.bytesPerSecond,
    );
    this.updatedMs = nowMs;
    this.tokens -= bytes;
    if (this.tokens >= 0) return 0;
    return Math.min(quotaThrottleMsMax, Math.ceil((-this.tokens / this.bytesPerSecond) * 1000));
  }
}

/** What one principal used, for metrics. */
export interface QuotaUsage {
  bytes: Record<QuotaKind, number>;
  throttleMs: Record<QuotaKind, number>;
  connections: number;
  connectionsRefused: number;
}

interface PrincipalState {
  quotas: Readonly<PrincipalQuotas>;
  buckets: Partial<Record<QuotaKind, TokenBucket>>;
  usage: QuotaUsage;
}

export class PrincipalQuotaTracker {
  private readonly states = new Map<string, PrincipalState>();

  constructor(private readonly clock: Clock) {}

  private state(name: string, quotas: Readonly<PrincipalQuotas>): PrincipalState {
    let state = this.states.get(name);
    if (state === undefined) {
      const now = this.clock.nowMs();
      state = {
        quotas,
        buckets: {
          ...(quotas.produceBytesPerSecond !== undefined
            ? { produce: new TokenBucket(quotas.produceBytesPerSecond, now) }
            : {}),
          ...(quotas.fetchBytesPerSecond !== undefined
            ? { fetch: new TokenBucket(quotas.fetchBytesPerSecond, now) }
            : {}),
        },
        usage: {
          bytes: { produce: 0, fetch: 0 },
          throttleMs: { produce: 0, fetch: 0 },
          connections: 0,
          connectionsRefused: 0,
        },
      };
      this.states.set(name, state);
    }
    return state;
  }

  /** Counts `bytes` of `kind` for the principal; returns the delay its answer must wait (ms). */
  charge(name: string, quotas: Readonly<PrincipalQuotas>, kind: QuotaKind, bytes: number): number {
    const state = this.state(name, quotas);
    state.usage.bytes[kind] += bytes;
    const bucket = state.buckets[kind];
    if (bucket === undefined) return 0;
    const delayMs = bucket.charge(bytes, this.clock.nowMs());
    state.usage.throttleMs[kind] += delayMs;
    return delayMs;
  }

  /** Takes a connection slot; false (counted) when the principal holds maxConnections already. */
  openConnection(name: string, quotas: Readonly<PrincipalQuotas>): boolean {
    const state = this.state(name, quotas);
    if (quotas.maxConnections !== undefined && state.usage.connections >= quotas.maxConnections) {
      state.usage.connectionsRefused++;
      return false;
    }
    state.usage.connections++;
    return true;
  }

  closeConnection(name: string): void {
    const state = this.states.get(name);
    if (state !== undefined && state.usage.connections > 0) state.usage.connections--;
  }

  usage(): Array<[string, QuotaUsage]> {
    return [...this.states].map(([name, state]) => [name, state.usage]);
  }
}
