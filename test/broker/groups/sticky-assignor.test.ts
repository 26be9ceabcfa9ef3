/**
 * The sticky assignor against its contract, over random histories of members joining and leaving
 * and partitions being added (fast-check): balance, every partition once, stickiness, minimal movement.
 */
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { assignSticky } from '../../../src/broker/groups/sticky-assignor.js';

type Step = { kind: 'join'; id: number } | { kind: 'leave'; index: number } | { kind: 'grow'; count: number };

const step: fc.Arbitrary<Step> = fc.oneof(
  fc.record({ kind: fc.constant('join' as const), id: fc.integer({ min: 0, max: 30 }) }),
  fc.record({ kind: fc.constant('leave' as const), index: fc.nat() }),
  fc.record({ kind: fc.constant('grow' as const), count: fc.integer({ min: 1, max: 8 }) }),
);

function check(
  members: string[],
  partitions: string[],
  previous: Map<string, string>,
  next: Map<string, string>,
): void {
  // Every partition exactly once, only to members (none without members).
  expect([...next.keys()].sort()).toEqual(members.length === 0 ? [] : [...partitions].sort());
  for (const owner of next.values()) expect(members).toContain(owner);
  // Balance.
  const counts = members.map((id) => [...next.values()].filter((owner) => owner === id).length);
  if (members.length > 0) expect(Math.max(...counts) - Math.min(...counts)).toBeLessThanOrEqual(1);
  // Stickiness: each member keeps as many of its old partitions as its new count allows.
  const present = new Set(partitions);
  for (const id of members) {
    const before = [...previous]
      .filter(([key, owner]) => owner === id && present.has(key))
      .map(([key]) => key);
    const after = [...next].filter(([, owner]) => owner === id).map(([key]) => key);
    const kept = after.filter((key) => before.includes(key)).length;
    expect(kept).toBe(Math.min(before.length, after.length));
  }
  // Minimal movement: a partition whose owner stays moves only from a member that lost count.
  for (const [key, owner] of previous) {
    if (!present.has(key) || !members.includes(owner) || next.get(key) === owner) continue;
    const before = [...previous].filter(([k, o]) => o === owner && present.has(k)).length;
    const after = [...next.values()].filter((o) => o === owner).length;
    expect(after).toBeLessThan(before);
  }
}

describe('assignSticky', () => {
  test('balance, stickiness and minimal movement over random histories', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 40 }), fc.array(step, { maxLength: 40 }), (initial, steps) => {
        let partitions = Array.from({ length: initial }, (_, i) => `t\n${i}`);
        let members: string[] = [];
        let assignment = new Map<string, string>();
        for (const s of steps) {
          if (s.kind === 'join' && !members.includes(`m${s.id}`)) members = [...members, `m${s.id}`];
          else if (s.kind === 'leave' && members.length > 0)
            members = members.filter((_, i) => i !== s.index % members.length);
          else if (s.kind === 'grow') {
            const from = partitions.length;
            partitions = [...partitions, ...Array.from({ length: s.count }, (_, i) => `t\n${from + i}`)];
          }
          const next = assignSticky(members, partitions, assignment);
          check(members, partitions, assignment, next);
          assignment = next;
        }
      }),
      { numRuns: 300 },
    );
  });

  test('deterministic, and the same inputs move nothing', () => {
    const partitions = Array.from({ length: 10 }, (_, i) => `t\n${i}`);
    const first = assignSticky(['a', 'b', 'c'], partitions, new Map());
    expect(assignSticky(['c', 'b', 'a'], partitions, new Map())).toEqual(first);
    expect(assignSticky(['a', 'b', 'c'], partitions, first)).toEqual(first);
  });

  test('a leaving member moves only its own partitions', () => {
    const partitions = Array.from({ length: 12 }, (_, i) => `t\n${i}`);
    const before = assignSticky(['a', 'b', 'c', 'd'], partitions, new Map());
    const after = assignSticky(['a', 'b', 'c'], partitions, before);
    const moved = partitions.filter((key) => before.get(key) !== after.get(key));
    expect(moved.every((key) => before.get(key) === 'd')).toBe(true);
    expect(moved).toHaveLength(3);
  });
});
