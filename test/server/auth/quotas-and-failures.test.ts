/**
 * The per-principal token buckets (principal-quotas.ts), the failed-attempt limiter of the
 * Authenticator and the auth file's checks, on a ManualClock: delays are computed from the clock,
 * so they are asserted exactly (no wall time involved).
 */
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/clock.js';
import { SpillwayError } from '../../../src/errors.js';
import { parseAuthConfig } from '../../../src/server/auth/auth-file.js';
import { Authenticator, authFailuresBurst } from '../../../src/server/auth/authenticator.js';
import { PrincipalQuotaTracker, quotaThrottleMsMax } from '../../../src/server/auth/principal-quotas.js';
import {
  hashSecret,
  newToken,
  parseTokenHash,
  splitToken,
  verifySecret,
} from '../../../src/server/auth/token-hash.js';

async function codeOf(work: Promise<unknown>): Promise<string | null> {
  try {
    await work;
    return null;
  } catch (error) {
    return error instanceof SpillwayError ? error.code : String(error);
  }
}

describe('PrincipalQuotaTracker', () => {
  it('lets one second of the rate through, then delays by the debt at the rate', () => {
    const clock = new ManualClock();
    const quotas = new PrincipalQuotaTracker(clock);
    const limits = { produceBytesPerSecond: 1000 };
    expect(quotas.charge('p', limits, 'produce', 1000)).toBe(0);
    expect(quotas.charge('p', limits, 'produce', 500)).toBe(500); // 500 bytes of debt at 1000/s
    clock.advance(500);
    expect(quotas.charge('p', limits, 'produce', 250)).toBe(250);
    expect(quotas.charge('p', limits, 'fetch', 10_000_000)).toBe(0); // no fetch quota
    expect(quotas.charge('p', limits, 'produce', 10_000_000)).toBe(quotaThrottleMsMax);
    clock.advance(60_000);
    const [[name, usage]] = quotas.usage() as [[string, ReturnType<PrincipalQuotaTracker['usage']>[0][1]]];
    expect(name).toBe('p');
    expect(usage.bytes.produce).toBe(1000 + 500 + 250 + 10_000_000);
    expect(usage.throttleMs.produce).toBe(500 + 250 + quotaThrottleMsMax);
  });

  it('counts connections against maxConnections', () => {
    const quotas = new PrincipalQuotaTracker(new ManualClock());
    const limits = { maxConnections: 1 };
    expect(quotas.openConnection('p', limits)).toBe(true);
    expect(quotas.openConnection('p', limits)).toBe(false);
    quotas.closeConnection('p');
    expect(quotas.openConnection('p', limits)).toBe(true);
    expect(quotas.usage()[0]![1].connectionsRefused).toBe(1);
  });
});

describe('Authenticator', () => {
  it('refuses an address after its burst of failures until the bucket refills', async () => {
    const clock = new ManualClock();
    const token = newToken('svc');
    const { name, secret } = splitToken(token)!;
    const config = parseAuthConfig(
      { principals: [{ name, tokenHash: await hashSecret(secret), allow: [] }] },
      'test',
    );
    const authenticator = new Authenticator(config, clock);
    for (let i = 0; i < authFailuresBurst; i++) {
      expect(await codeOf(authenticator.authenticate(`svc.wrong${i}`, '10.0.0.1'))).toBe('UNAUTHENTICATED');
    }
    expect(await codeOf(authenticator.authenticate('svc.wrong', '10.0.0.1'))).toBe('TOO_MANY_REQUESTS');
    expect(await codeOf(authenticator.authenticate(token, '10.0.0.1'))).toBe('TOO_MANY_REQUESTS'); // unchecked
    expect(await codeOf(authenticator.authenticate(token, '10.0.0.2'))).toBeNull(); // another address
    expect(await codeOf(authenticator.authenticate(token, '10.0.0.1'))).toBeNull(); // remembered: no attempt taken
    clock.advance(2000);
    expect(await codeOf(authenticator.authenticate('svc.wrong', '10.0.0.1'))).toBe('UNAUTHENTICATED');
    expect(authenticator.failures).toBe(authFailuresBurst + 1);
    expect(authenticator.throttled).toBe(2);
    expect(await codeOf(authenticator.authenticate(undefined, '10.0.0.3'))).toBe('UNAUTHENTICATED');
  });
});

describe('token hashes', () => {
  it('verify the secret they were made from, and nothing else', async () => {
    const stored = parseTokenHash(await hashSecret('s3cret'), 'test');
    expect(await verifySecret('s3cret', stored)).toBe(true);
    expect(await verifySecret('s3cret ', stored)).toBe(false);
    const again = parseTokenHash(await hashSecret('s3cret'), 'test');
    expect(again.salt.equals(stored.salt)).toBe(false); // a salt per hash
  });

  it('refuse plain tokens and absurd costs in the auth file', () => {
    for (const bad of [
      'svc.secret',
      'scrypt$16384$8$1$c2FsdHNhbHQ=$c2hvcnQ=',
      'scrypt$1073741824$8$1$c2FsdHNhbHQ=$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=',
      'scrypt$1000$8$1$c2FsdHNhbHQ=$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=',
      42,
    ]) {
      expect(() => parseTokenHash(bad, 'f')).toThrow(/scrypt\$N\$r\$p/);
    }
  });

  it('the auth file names the field of a mistake', () => {
    const hash = 'scrypt$16384$8$1$c2FsdHNhbHQ=$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=';
    expect(() => parseAuthConfig({ principals: [{ name: 'internal', tokenHash: hash }] }, 'f')).toThrow(
      /name/,
    );
    expect(() =>
      parseAuthConfig(
        {
          principals: [
            { name: 'a', tokenHash: hash },
            { name: 'a', tokenHash: hash },
          ],
        },
        'f',
      ),
    ).toThrow(/twice/);
    expect(() =>
      parseAuthConfig({ principals: [{ name: 'a', tokenHash: hash, quotas: { bps: 1 } }] }, 'f'),
    ).toThrow(/unknown quota/);
    expect(() =>
      parseAuthConfig({ principals: [{ name: 'a', tokenHash: hash, allow: [{ resource: 'topic' }] }] }, 'f'),
    ).toThrow(/allow\[0\]\.operations/);
    expect(() => parseAuthConfig({ users: [] }, 'f')).toThrow(/unknown key 'users'/);
  });
});
