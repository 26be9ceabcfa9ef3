/**
 * The auth file of `spillway broker --auth-file FILE` (docs/SECURITY.md, "The auth file"), JSON:
 *
 *   { "principals": [
 *       { "name": "orders-service",
 *         "tokenHash": "scrypt$16384$8$1$SALT$HASH",
 *         "allow": [ { "resource": "topic", "name": "orders.*", "operations": ["produce"] } ],
 *         "quotas": { "produceBytesPerSecond": 10485760, "fetchBytesPerSecond": 20971520,
 *                     "maxConnections": 64 } } ] }
 *
 * Every field is checked when the file is read; a mistake is INVALID_ARGUMENT naming the file and
 * the field (the broker does not start). Tokens are never stored: `tokenHash` is the scrypt form
 * of token-hash.ts. Read once at start.
 */
import { readFileSync } from 'node:fs';
import { InvalidArgumentError } from '../../errors.js';
import { AccessList, parseAccessRule } from '../../protocol/access-control.js';
import type { Principal } from '../../protocol/session.js';
import { parseTokenHash, principalNamePattern, type StoredTokenHash } from './token-hash.js';

/** Most principals one auth file may hold. */
export const principalsMax = 10_000;

export interface PrincipalQuotas {
  /** Bytes of record batches this principal may produce per second, all connections together. */
  produceBytesPerSecond?: number;
  /** Bytes of record batches this principal may fetch (fetch, group fetch, receive) per second. */
  fetchBytesPerSecond?: number;
  /** WebSocket connections this principal may hold at once. */
  maxConnections?: number;
}

/** A principal as the broker knows it from the auth file. */
export interface ConfiguredPrincipal extends Principal {
  readonly tokenHash: StoredTokenHash;
  readonly quotas: Readonly<PrincipalQuotas>;
}

export interface AuthConfig {
  readonly principals: ReadonlyMap<string, ConfiguredPrincipal>;
}

const quotaKeys = ['produceBytesPerSecond', 'fetchBytesPerSecond', 'maxConnections'] as const;

function asObject(value: unknown, where: string): Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new InvalidArgumentError(`${where} must be a JSON object`);
  }
  return value as Record<string, unknown>;
}

function parseQuotas(value: unknown, where: string): PrincipalQuotas {
  if (value === undefined) return {};
  const fields = asObject(value, where);
  const quotas: PrincipalQuotas = {};
  for (const [key, amount] of Object.entries(fields)) {
    if (!quotaKeys.includes(key as (typeof quotaKeys)[number])) {
      throw new InvalidArgumentError(`${where}: unknown quota '${key}' (known: ${quotaKeys.join(', ')})`);
    }
    if (typeof amount !== 'number' || !Number.isSafeInteger(amount) || amount < 1) {
      throw new InvalidArgumentError(`${where}.${key} must be a positive integer`);
    }
    quotas[key as (typeof quotaKeys)[number]] = amount;
  }
  return quotas;
}

/** Checks an auth file's parsed JSON; `source` names it in errors. */
export function parseAuthConfig(json: unknown, source: string): AuthConfig {
  const root = asObject(json, source);
  for (const key of Object.keys(root)) {
    if (key !== 'principals') throw new InvalidArgumentError(`${source}: unknown key '${key}'`);
  }
  const list = root['principals'];
  if (!Array.isArray(list) || list.length > principalsMax) {
    throw new InvalidArgumentError(`${source}: 'principals' must be a list of at most ${principalsMax}`);
  }
  const principals = new Map<string, ConfiguredPrincipal>();
  list.forEach((entry, index) => {
    const where = `${source}: principals[${index}]`;
    const fields = asObject(entry, where);
    for (const key of Object.keys(fields)) {
      if (!['name', 'tokenHash', 'allow', 'quotas'].includes(key)) {
        throw new InvalidArgumentError(`${where}: unknown field '${key}'`);
      }
    }
    const name = fields['name'];
    if (typeof name !== 'string' || !principalNamePattern.test(name) || name === 'internal') {
      throw new InvalidArgumentError(
        `${where}.name must match ${principalNamePattern} (and not be 'internal')`,
      );
    }
    if (principals.has(name)) throw new InvalidArgumentError(`${where}: principal '${name}' appears twice`);
    const allow = fields['allow'] ?? [];
    if (!Array.isArray(allow)) throw new InvalidArgumentError(`${where}.allow must be a list of rules`);
    const rules = allow.map((rule, ruleIndex) => parseAccessRule(rule, `${where}.allow[${ruleIndex}]`));
    principals.set(name, {
      name,
      access: new AccessList(rules),
      tokenHash: parseTokenHash(fields['tokenHash'], `${where}.tokenHash`),
      quotas: parseQuotas(fields['quotas'], `${where}.quotas`),
    });
  });
  return { principals };
}

/** Reads and checks an auth file. */
export function loadAuthFile(path: string): AuthConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new InvalidArgumentError(`cannot read auth file ${path}: ${(error as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new InvalidArgumentError(`auth file ${path} is not valid JSON: ${(error as Error).message}`);
  }
  return parseAuthConfig(json, `auth file ${path}`);
}
