/**
 * Checks tokens against the auth file (docs/SECURITY.md), for HELLO on WebSocket and for
 * `Authorization: Bearer` on HTTP:
 * - a token is `NAME.SECRET`; the secret is checked with scrypt against NAME's stored hash
 *   (token-hash.ts: thread pool, constant-time comparison). An unknown name costs the same scrypt
 *   against a dummy hash, so timing does not tell which names exist.
 * - Tokens verified once are remembered by their SHA-256 (memory only, at most
 *   verifiedTokensMax; cleared when full), so a reconnect or an HTTP request costs a hash, not an
 *   scrypt.
 * - Failed attempts are rate-limited per source address: a bucket of authFailuresBurst attempts,
 *   refilled at authFailuresPerSecond; an address with an empty bucket is refused at once with
 *   TOO_MANY_REQUESTS without checking anything. At most authFailureAddressesMax addresses are
 *   tracked (full buckets are forgotten first). Unverified checks in flight at once are bounded by
 *   authChecksInFlightMax (more: TOO_MANY_REQUESTS), so a flood cannot queue scrypt work without end.
 * - replace() swaps the configuration (auth file reload): the remembered tokens are forgotten, so a
 *   removed principal or a changed hash takes effect at the next check; a check running across the
 *   swap answers by the configuration it started with.
 * Counters (failures, throttled, checks) are read by /metrics. Single-threaded (the event loop).
 */
import { createHash } from 'node:crypto';
import type { Clock } from '../../clock.js';
import { SpillwayError } from '../../errors.js';
import { tokenLengthMax } from '../../limits.js';
import type { AuthConfig, ConfiguredPrincipal } from './auth-file.js';
import { parseTokenHash, splitToken, verifySecret } from './token-hash.js';

/** Failed attempts an address may make in a burst... */
export const authFailuresBurst = 10;
/** ...refilled at this rate. */
export const authFailuresPerSecond = 1;
/** Source addresses whose failed attempts are tracked at once. */
export const authFailureAddressesMax = 10_000;
/** Verified tokens remembered (by SHA-256). */
export const verifiedTokensMax = 10_000;
/** scrypt checks running or queued at once. */
export const authChecksInFlightMax = 64;

/** A valid hash of a secret nobody has: unknown names are checked against it (same cost). */
const dummyHash = parseTokenHash(
  'scrypt$16384$8$1$c3BpbGx3YXktZHVtbXk=$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=',
  'dummy',
);

interface Bucket {
  tokens: number;
  updatedMs: number;
}

export class Authenticator {
  failures = 0;
  throttled = 0;
  /** scrypt checks made (cache misses). */
  checks = 0;
  private readonly verified = new Map<string, ConfiguredPrincipal>();
  private readonly buckets = new Map<string, Bucket>();
  private inFlight = 0;

  constructor(
    private config: AuthConfig,
    private readonly clock: Clock,
  ) {}

  /** The principals checked from now on (auth file reload); forgets every verified token. */
  replace(config: AuthConfig): void {
    this.config = config;
    this.verified.clear();
  }

  /** The current configuration's entry for `name`, if any. */
  principal(name: string): ConfiguredPrincipal | undefined {
    return this.config.principals.get(name);
  }

  get principalCount(): number {
    return this.config.principals.size;
  }

  /** The principal of `token` (sent from `address`), or a SpillwayError (see the header). */
  async authenticate(token: string | undefined, address: string): Promise<ConfiguredPrincipal> {
    if (token === undefined || token === '') {
      throw new SpillwayError(
        'UNAUTHENTICATED',
        'this broker requires a token (client option token, --token or SPILLWAY_TOKEN)',
      );
    }
    const digest = createHash('sha256').update(token).digest('base64');
    const known = this.verified.get(digest);
    if (known !== undefined) return known;
    this.takeAttempt(address);
    if (this.inFlight >= authChecksInFlightMax) {
      this.throttled++;
      throw new SpillwayError('TOO_MANY_REQUESTS', 'too many token checks at once: try again later');
    }
    this.inFlight++;
    let principal: ConfiguredPrincipal | undefined;
    let valid = false;
    try {
      const parts = token.length <= tokenLengthMax ? splitToken(token) : null;
      principal = parts === null ? undefined : this.config.principals.get(parts.name);
      this.checks++;
      valid = await verifySecret(parts?.secret ?? token, principal?.tokenHash ?? dummyHash);
    } finally {
      this.inFlight--;
    }
    if (!valid || principal === undefined) {
      this.failures++;
      throw new SpillwayError(
        'UNAUTHENTICATED',
        'the token is not valid (unknown principal or wrong secret)',
      );
    }
    this.refund(address);
    if (this.verified.size >= verifiedTokensMax) this.verified.clear();
    this.verified.set(digest, principal);
    return principal;
  }

  /** Takes one attempt from the address's bucket, or throws TOO_MANY_REQUESTS when it is empty. */
  private takeAttempt(address: string): void {
    const now = this.clock.nowMs();
    let bucket = this.buckets.get(address);
    if (bucket === undefined) {
      if (this.buckets.size >= authFailureAddressesMax) this.forgetFullBuckets(now);
      bucket = { tokens: authFailuresBurst, updatedMs: now };
      this.buckets.set(address, bucket);
    } else {
      bucket.tokens = Math.min(
        authFailuresBurst,
        bucket.tokens + ((now - bucket.updatedMs) / 1000) * authFailuresPerSecond,
      );
      bucket.updatedMs = now;
    }
    if (bucket.tokens < 1) {
      this.throttled++;
      throw new SpillwayError(
        'TOO_MANY_REQUESTS',
        `too many failed authentication attempts from ${address}: try again in a few seconds`,
      );
    }
    bucket.tokens -= 1;
  }

  /** A successful check gives its attempt back. */
  private refund(address: string): void {
    const bucket = this.buckets.get(address);
    if (bucket !== undefined) bucket.tokens = Math.min(authFailuresBurst, bucket.tokens + 1);
  }

  private forgetFullBuckets(now: number): void {
    for (const [address, bucket] of this.buckets) {
      const tokens = bucket.tokens + ((now - bucket.updatedMs) / 1000) * authFailuresPerSecond;
      if (tokens >= authFailuresBurst) this.buckets.delete(address);
    }
    // Still full (an attack from many addresses): forget the oldest half.
    if (this.buckets.size >= authFailureAddressesMax) {
      let drop = this.buckets.size / 2;
      for (const address of this.buckets.keys()) {
        if (drop-- <= 0) break;
        this.buckets.delete(address);
      }
    }
  }
}
