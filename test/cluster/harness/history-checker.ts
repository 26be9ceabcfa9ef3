/**
 * Checks an OperationHistory of a replicated topic under failures (issue 14) and lists every
 * violation found (an empty list: the history is safe). Per partition:
 *
 * - **lost**: an acknowledged value is not at the offset its acknowledgement named in the longest
 *   read, or a read that covers that offset holds something else there (acked ⊆ read, at its offset).
 * - **divergent**: two reads disagree at an offset both cover (consumers reading from different
 *   replicas, or from the leader before and after a failover, must see one sequence).
 * - **reorder**: a value was acknowledged before another was first sent, yet the other sits at a
 *   lower offset (acknowledged values by their acknowledged offset, others by where the longest read
 *   has them): per-partition order follows real-time order.
 * - **duplicate**: a value appears in one read more often than it was sent (once unless resent:
 *   only a resend — "maybe written twice" — explains a second copy).
 * - **phantom**: a read holds a value nobody produced to that partition.
 * - **unsettled**: a produce neither acknowledged nor given up (the test must settle everything).
 * - **unordered-read**: a read's offsets do not strictly increase.
 *
 * Values not acknowledged (failed) may or may not be in the log: either is fine, at most as often as
 * they were sent.
 */
import type { OperationHistory, ProduceOperation, ReadObservation } from './operation-history.js';

export type ViolationKind =
  | 'lost'
  | 'divergent'
  | 'reorder'
  | 'duplicate'
  | 'phantom'
  | 'unsettled'
  | 'unordered-read';

export interface Violation {
  kind: ViolationKind;
  partition: number;
  value?: string;
  message: string;
}

/** Violations listed in a message (the rest counted). */
const describedMax = 20;

export function describeViolations(violations: readonly Violation[]): string {
  const lines = violations
    .slice(0, describedMax)
    .map((violation) => `${violation.kind} p${violation.partition}: ${violation.message}`);
  if (violations.length > describedMax) lines.push(`... and ${violations.length - describedMax} more`);
  return lines.join('\n');
}

export function checkHistory(history: Pick<OperationHistory, 'produces' | 'reads'>): Violation[] {
  const violations: Violation[] = [];
  const partitions = new Set<number>([
    ...history.produces.map((operation) => operation.partition),
    ...history.reads.map((read) => read.partition),
  ]);
  for (const partition of [...partitions].sort((a, b) => a - b)) {
    const produces = history.produces.filter((operation) => operation.partition === partition);
    const reads = history.reads.filter((read) => read.partition === partition);
    checkPartition(partition, produces, reads, violations);
  }
  return violations;
}

function checkPartition(
  partition: number,
  produces: readonly ProduceOperation[],
  reads: readonly ReadObservation[],
  violations: Violation[],
): void {
  const byValue = new Map(produces.map((operation) => [operation.value, operation]));
  for (const operation of produces) {
    if (operation.outcome === 'pending') {
      violations.push({
        kind: 'unsettled',
        partition,
        value: operation.value,
        message: `${operation.value} was never acknowledged nor given up`,
      });
    }
  }

  // Each read on its own: increasing offsets, no phantom, no copy beyond the sends.
  for (const read of reads) {
    const copies = new Map<string, number>();
    let previous = -1;
    for (const record of read.records) {
      if (record.offset <= previous) {
        violations.push({
          kind: 'unordered-read',
          partition,
          value: record.value,
          message: `${read.source}: offset ${record.offset} after ${previous}`,
        });
      }
      previous = record.offset;
      copies.set(record.value, (copies.get(record.value) ?? 0) + 1);
    }
    for (const [value, count] of copies) {
      const operation = byValue.get(value);
      if (operation === undefined) {
        violations.push({
          kind: 'phantom',
          partition,
          value,
          message: `${read.source} holds ${value}, never produced to this partition`,
        });
      } else if (count > operation.attempts) {
        violations.push({
          kind: 'duplicate',
          partition,
          value,
          message: `${read.source} holds ${value} ${count} times; it was sent ${operation.attempts} time(s)`,
        });
      }
    }
  }

  // All reads against one another: one value per offset.
  const seen = new Map<number, { value: string; source: string }>();
  for (const read of reads) {
    for (const record of read.records) {
      const earlier = seen.get(record.offset);
      if (earlier === undefined) {
        seen.set(record.offset, { value: record.value, source: read.source });
      } else if (earlier.value !== record.value) {
        violations.push({
          kind: 'divergent',
          partition,
          value: record.value,
          message: `offset ${record.offset}: ${earlier.source} read ${earlier.value}, ${read.source} read ${record.value}`,
        });
      }
    }
  }

  // Acknowledged values: in the longest read at their offset, and nowhere overwritten.
  const longest = reads.reduce<ReadObservation | undefined>(
    (best, read) => (best === undefined || endOf(read) > endOf(best) ? read : best),
    undefined,
  );
  const longestAt = new Map((longest?.records ?? []).map((record) => [record.offset, record.value]));
  for (const operation of produces) {
    if (operation.outcome !== 'acked') continue;
    const offset = operation.offset as number;
    const there = longestAt.get(offset);
    if (there === operation.value) continue;
    const elsewhere = (longest?.records ?? []).filter((record) => record.value === operation.value);
    const reader = longest === undefined ? 'no read' : longest.source;
    violations.push({
      kind: 'lost',
      partition,
      value: operation.value,
      message:
        there === undefined
          ? `${operation.value} acknowledged at offset ${offset}; ${reader} has no record there${elsewhere.length > 0 ? ` (it has the value at ${elsewhere.map((record) => record.offset).join(', ')})` : ''}`
          : `${operation.value} acknowledged at offset ${offset}; ${reader} has ${there} there`,
    });
  }

  checkOrder(partition, produces, longest, violations);
}

const endOf = (read: ReadObservation): number => read.records.at(-1)?.offset ?? -1;

/**
 * Real-time order: no value acknowledged before another was first sent may sit at a higher offset
 * than it. Positions: the acknowledged offset, or for values not acknowledged each offset the longest
 * read holds them at. Scans positions from the highest offset down, keeping the earliest
 * acknowledgement seen at higher offsets.
 */
function checkOrder(
  partition: number,
  produces: readonly ProduceOperation[],
  longest: ReadObservation | undefined,
  violations: Violation[],
): void {
  const positions: { offset: number; operation: ProduceOperation }[] = [];
  const byValue = new Map(produces.map((operation) => [operation.value, operation]));
  for (const operation of produces) {
    if (operation.outcome === 'acked') positions.push({ offset: operation.offset as number, operation });
  }
  for (const record of longest?.records ?? []) {
    const operation = byValue.get(record.value);
    if (operation !== undefined && operation.outcome !== 'acked') {
      positions.push({ offset: record.offset, operation });
    }
  }
  positions.sort((a, b) => b.offset - a.offset);
  let earliest: { offset: number; operation: ProduceOperation } | undefined;
  let index = 0;
  while (index < positions.length) {
    const offset = (positions[index] as { offset: number }).offset;
    let end = index;
    while (end < positions.length && (positions[end] as { offset: number }).offset === offset) end++;
    const group = positions.slice(index, end);
    for (const { operation } of group) {
      if (earliest !== undefined && (earliest.operation.endedAt as number) < operation.invokedAt) {
        violations.push({
          kind: 'reorder',
          partition,
          value: operation.value,
          message: `${earliest.operation.value} was acknowledged at offset ${earliest.offset} before ${operation.value} was sent, which sits at offset ${offset}`,
        });
      }
    }
    for (const position of group) {
      if (position.operation.outcome !== 'acked') continue;
      if (
        earliest === undefined ||
        (position.operation.endedAt as number) < (earliest.operation.endedAt as number)
      ) {
        earliest = position;
      }
    }
    index = end;
  }
}
