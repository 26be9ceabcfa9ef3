/**
 * Tokens and their stored form (docs/SECURITY.md, "Tokens"). A token is `NAME.SECRET`: the
 * principal's name, a dot, and a secret (`spillway auth add` makes 32 random bytes, base64url, so no
 * dot). The auth file never holds the token: it holds
 *
 *   scrypt$N$r$p$SALT$HASH      (SALT: 16 random bytes per principal, HASH: 32 bytes, both base64)
 *
 * with HASH = scrypt(SECRET, SALT, N, r, p). Verification recomputes it (off the event loop, in the
 * libuv thread pool) and compares with crypto.timingSafeEqual: constant time.
 * Stateless; safe to call concurrently.
 */
import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import { InvalidArgumentError } from '../../errors.js';

/** scrypt cost parameters of new hashes: N = 2^14, r = 8, p = 1 (16 MiB, ~30-60 ms per check). */
export const scryptCost = { N: 16_384, r: 8, p: 1 } as const;
const hashBytes = 32;
const saltBytes = 16;
/** Bounds of parameters accepted from a file: no file can make one check take minutes or gigabytes. */
const scryptNMax = 1 << 20;
const scryptRMax = 32;
const scryptPMax = 16;

/** Principal names: letters, digits, `.`, `_`, `-`; 1 to 128 characters. */
export const principalNamePattern = /^[A-Za-z0-9._-]{1,128}$/;

export interface StoredTokenHash {
  N: number;
  r: number;
  p: number;
  salt: Buffer;
  hash: Buffer;
}

/** Splits `NAME.SECRET` at its last dot; null when the token has no such shape. */
export function splitToken(token: string): { name: string; secret: string } | null {
  const dot = token.lastIndexOf('.');
  if (dot <= 0 || dot === token.length - 1) return null;
  const name = token.slice(0, dot);
  if (!principalNamePattern.test(name)) return null;
  return { name, secret: token.slice(dot + 1) };
}

/** A new random token for `name`. */
export function newToken(name: string): string {
  if (!principalNamePattern.test(name)) {
    throw new InvalidArgumentError(`principal name must match ${principalNamePattern}, got '${name}'`);
  }
  return `${name}.${randomBytes(32).toString('base64url')}`;
}

function derive(secret: string, stored: Omit<StoredTokenHash, 'hash'>): Promise<Buffer> {
  const { N, r, p, salt } = stored;
  return new Promise((resolve, reject) => {
    scrypt(secret, salt, hashBytes, { N, r, p, maxmem: 256 * N * r + 1024 * 1024 }, (error, key) =>
      error ? reject(error) : resolve(key),
    );
  });
}

/** The stored form of a token's secret, with a fresh salt. */
export async function hashSecret(secret: string): Promise<string> {
  const salt = randomBytes(saltBytes);
  const hash = await derive(secret, { ...scryptCost, salt });
  const { N, r, p } = scryptCost;
  return `scrypt$${N}$${r}$${p}$${salt.toString('base64')}$${hash.toString('base64')}`;
}

/** Parses a stored hash; throws INVALID_ARGUMENT naming `where` when it is not one. */
export function parseTokenHash(text: unknown, where: string): StoredTokenHash {
  const parts = typeof text === 'string' ? text.split('$') : [];
  const [kind, n, r, p, salt, hash] = parts;
  const integer = (value: string | undefined, max: number) =>
    value !== undefined && /^\d{1,8}$/.test(value) && Number(value) >= 1 && Number(value) <= max
      ? Number(value)
      : null;
  const N = integer(n, scryptNMax);
  const R = integer(r, scryptRMax);
  const P = integer(p, scryptPMax);
  const saltBytesRead = salt === undefined ? Buffer.alloc(0) : Buffer.from(salt, 'base64');
  const hashRead = hash === undefined ? Buffer.alloc(0) : Buffer.from(hash, 'base64');
  if (
    parts.length !== 6 ||
    kind !== 'scrypt' ||
    N === null ||
    (N & (N - 1)) !== 0 ||
    R === null ||
    P === null ||
    saltBytesRead.length < 8 ||
    hashRead.length !== hashBytes
  ) {
    throw new InvalidArgumentError(
      `${where} must be 'scrypt$N$r$p$SALT$HASH' as printed by 'spillway auth hash-token' (never the token itself)`,
    );
  }
  return { N, r: R, p: P, salt: saltBytesRead, hash: hashRead };
}

/** True when `secret` hashes to `stored` (constant-time comparison of the hashes). */
export async function verifySecret(secret: string, stored: StoredTokenHash): Promise<boolean> {
  const derived = await derive(secret, stored);
  return timingSafeEqual(derived, stored.hash);
}
