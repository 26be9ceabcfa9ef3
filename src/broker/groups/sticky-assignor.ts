/**
 * The sticky assignor of group mode: divides partitions among members so that
 *  - balance: every partition has exactly one member, and member partition counts differ by at most 1;
 *  - stickiness / minimal movement: a member keeps as many of the partitions it had as its new quota
 *    allows (for every member, |new ∩ previous| = min(|previous that still exist|, |new|)); a
 *    partition moves only when its member left or held more than its quota.
 *
 * Quotas: with P partitions and M members, every member gets floor(P/M) and P mod M of them one more.
 * The members allowed the extra one are those that held the most before (ties: member id order),
 * so the fewest partitions move. Deterministic: the same inputs give the same assignment.
 *
 * Pure: no I/O, no clock; test/broker/groups/sticky-assignor.test.ts checks the properties above
 * against random histories (fast-check).
 */

/** Partition key -> member id. */
export type Assignment = ReadonlyMap<string, string>;

/**
 * Assigns `partitions` (keys) to `members` (ids), keeping what `previous` gave each member as far as
 * balance allows. Keys of `previous` that are no longer partitions, or whose member is gone, are ignored.
 */
export function assignSticky(
  members: readonly string[],
  partitions: readonly string[],
  previous: Assignment,
): Map<string, string> {
  const result = new Map<string, string>();
  if (members.length === 0 || partitions.length === 0) return result;
  const memberIds = [...new Set(members)].sort();
  const base = Math.floor(partitions.length / memberIds.length);
  let extraSlots = partitions.length % memberIds.length;
  const held = new Map<string, string[]>(memberIds.map((id) => [id, []]));
  const sortedPartitions = [...partitions].sort();
  for (const key of sortedPartitions) {
    const owner = previous.get(key);
    if (owner !== undefined) held.get(owner)?.push(key);
  }
  // Who may keep base + 1: those that held the most (they lose nothing), ties by id.
  const byHeld = [...memberIds].sort((a, b) => held.get(b)!.length - held.get(a)!.length || (a < b ? -1 : 1));
  const quota = new Map<string, number>();
  for (const id of byHeld) {
    const wantsExtra = held.get(id)!.length > base;
    if (wantsExtra && extraSlots > 0) {
      quota.set(id, base + 1);
      extraSlots--;
    } else {
      quota.set(id, base);
    }
  }
  const counts = new Map<string, number>();
  for (const id of memberIds) {
    const kept = held.get(id)!.slice(0, quota.get(id)!);
    for (const key of kept) result.set(key, id);
    counts.set(id, kept.length);
  }
  // Extra slots nobody claimed by holding go to the members with the fewest, in id order.
  if (extraSlots > 0) {
    for (const id of memberIds) {
      if (extraSlots === 0) break;
      if (quota.get(id) === base) {
        quota.set(id, base + 1);
        extraSlots--;
      }
    }
  }
  const orphans = sortedPartitions.filter((key) => !result.has(key));
  let next = 0;
  // Fill the members furthest below their quota first (fewest now), then by id.
  const fillOrder = [...memberIds].sort((a, b) => counts.get(a)! - counts.get(b)! || (a < b ? -1 : 1));
  for (const id of fillOrder) {
    let count = counts.get(id)!;
    const limit = quota.get(id)!;
    while (count < limit && next < orphans.length) {
      result.set(orphans[next++]!, id);
      count++;
    }
    counts.set(id, count);
  }
  return result;
}
