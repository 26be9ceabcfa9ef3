/**
 * Access control lists (docs/SECURITY.md): what a principal may do, as a list of rules
 * `{ resource, name, operations }`:
 * - resource: `topic`, `group` or `cluster` (the broker as a whole: listing topics and groups, the
 *   integrity report, repairs);
 * - name: an exact name, a prefix ending in `*` (`orders.*` matches `orders.eu` and `orders.`, not
 *   `orders`), or `*` for every name; cluster rules use `*`;
 * - operations: `produce`, `consume`, `describe`, `admin`. Holding produce, consume or admin on a
 *   resource implies describe on it (a producer reads its topic's partition count).
 * Rules only allow; there are no deny rules, so the order of rules does not matter and a principal
 * without rules may do nothing.
 *
 * `AccessList.allows` is on the hot path (every produce and fetch with auth on): answers are cached
 * per (resource, operation, name), the cache bounded by accessCacheEntriesMax (cleared when full).
 * Pure and single-threaded.
 */
import { InvalidArgumentError } from '../errors.js';

export const resourceTypes = ['topic', 'group', 'cluster'] as const;
export type ResourceType = (typeof resourceTypes)[number];
export const operations = ['produce', 'consume', 'describe', 'admin'] as const;
export type Operation = (typeof operations)[number];

export interface AccessRule {
  resource: ResourceType;
  /** Exact name, `prefix*`, or `*`. */
  name: string;
  operations: readonly Operation[];
}

/** Cached answers of one access list before the cache is cleared. */
export const accessCacheEntriesMax = 4096;
/** Most rules one principal may hold. */
export const accessRulesMax = 1024;
/** Longest rule name (topic and group names are shorter; a prefix pattern is too). */
const ruleNameLengthMax = 512;

interface CompiledRule {
  resource: ResourceType;
  exact: string | null;
  prefix: string | null;
  operations: ReadonlySet<Operation>;
}

/** Checks one rule as read from a file or built by a program; throws INVALID_ARGUMENT naming `where`. */
export function parseAccessRule(value: unknown, where: string): AccessRule {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new InvalidArgumentError(`${where} must be an object { resource, name, operations }`);
  }
  const fields = value as Record<string, unknown>;
  for (const key of Object.keys(fields)) {
    if (key !== 'resource' && key !== 'name' && key !== 'operations') {
      throw new InvalidArgumentError(`${where}: unknown field '${key}'`);
    }
  }
  const resource = fields['resource'];
  if (!resourceTypes.includes(resource as ResourceType)) {
    throw new InvalidArgumentError(`${where}.resource must be one of ${resourceTypes.join(', ')}`);
  }
  const name = fields['name'] ?? '*';
  if (typeof name !== 'string' || name === '' || name.length > ruleNameLengthMax) {
    throw new InvalidArgumentError(`${where}.name must be a name, 'prefix*' or '*'`);
  }
  if (name.indexOf('*') !== -1 && name.indexOf('*') !== name.length - 1) {
    throw new InvalidArgumentError(`${where}.name: '*' may only end a name ('orders.*') or stand alone`);
  }
  if (resource === 'cluster' && name !== '*') {
    throw new InvalidArgumentError(`${where}.name: cluster rules name '*'`);
  }
  const list = fields['operations'];
  if (!Array.isArray(list) || list.length === 0 || !list.every((op) => operations.includes(op))) {
    throw new InvalidArgumentError(
      `${where}.operations must be a non-empty list of ${operations.join(', ')}`,
    );
  }
  return { resource: resource as ResourceType, name, operations: [...new Set(list as Operation[])] };
}

export class AccessList {
  private readonly rules: CompiledRule[];
  /** resource -> operation -> name -> allowed (no string built per check). */
  private readonly cache = new Map<ResourceType, Map<Operation, Map<string, boolean>>>();
  private cachedCount = 0;

  constructor(rules: readonly AccessRule[]) {
    if (rules.length > accessRulesMax) {
      throw new InvalidArgumentError(`at most ${accessRulesMax} rules per principal`);
    }
    this.rules = rules.map((rule) => {
      const star = rule.name.endsWith('*');
      const granted = new Set<Operation>(rule.operations);
      if (granted.size > 0) granted.add('describe');
      return {
        resource: rule.resource,
        exact: star ? null : rule.name,
        prefix: star ? rule.name.slice(0, -1) : null,
        operations: granted,
      };
    });
  }

  /** An access list that allows everything (the in-process principal, auth off). */
  static allowAll(): AccessList {
    return new AccessList(
      resourceTypes.map((resource) => ({ resource, name: '*', operations: [...operations] })),
    );
  }

  allows(resource: ResourceType, operation: Operation, name: string): boolean {
    let byOperation = this.cache.get(resource);
    if (byOperation === undefined) {
      byOperation = new Map();
      this.cache.set(resource, byOperation);
    }
    let byName = byOperation.get(operation);
    if (byName === undefined) {
      byName = new Map();
      byOperation.set(operation, byName);
    }
    const cached = byName.get(name);
    if (cached !== undefined) return cached;
    let allowed = false;
    for (const rule of this.rules) {
      if (rule.resource !== resource || !rule.operations.has(operation)) continue;
      if (rule.exact !== null ? rule.exact === name : name.startsWith(rule.prefix!)) {
        allowed = true;
        break;
      }
    }
    if (this.cachedCount >= accessCacheEntriesMax) {
      for (const operations of this.cache.values()) for (const names of operations.values()) names.clear();
      this.cachedCount = 0;
    }
    byName.set(name, allowed);
    this.cachedCount++;
    return allowed;
  }
}
