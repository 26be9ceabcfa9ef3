/**
 * The failure tests' history checker on hand-made histories: a safe one passes, and each kind of
 * unsafe history (a lost acknowledgement, a reorder, a duplicate no resend explains, a phantom, two
 * reads that disagree, an unsettled produce) is caught and named.
 */
import { describe, expect, test } from 'vitest';
import { checkHistory, describeViolations, type ViolationKind } from './history-checker.js';
import { OperationHistory, type ReadRecord } from './operation-history.js';

const records = (...values: string[]): ReadRecord[] => values.map((value, offset) => ({ offset, value }));

/** a, b, c acknowledged in order at 0, 1, 2; d failed (not in the log); a read from two replicas. */
function safeHistory(): OperationHistory {
  const history = new OperationHistory();
  const a = history.invoke(0, 'a');
  history.ack(a, 0);
  const b = history.invoke(0, 'b');
  const c = history.invoke(0, 'c'); // concurrent with b
  history.ack(c, 2);
  history.ack(b, 1);
  const d = history.invoke(0, 'd');
  history.fail(d, 'TIMEOUT');
  history.read(0, 'broker 1', records('a', 'b'));
  history.read(0, 'broker 2', records('a', 'b', 'c'));
  return history;
}

const kinds = (history: OperationHistory): ViolationKind[] => checkHistory(history).map((v) => v.kind);

describe('checkHistory', () => {
  test('a safe history has no violation', () => {
    expect(checkHistory(safeHistory())).toEqual([]);
  });

  test('a failed produce may be in the log, once per send', () => {
    const history = new OperationHistory();
    const a = history.invoke(0, 'a');
    history.fail(a, 'CONNECTION_LOST');
    history.read(0, 'leader', records('a'));
    expect(checkHistory(history)).toEqual([]);
  });

  test('lost: an acknowledged value missing from the reads, or at another offset', () => {
    const missing = safeHistory();
    missing.read(0, 'new leader', records('a', 'b')); // shorter: broker 2 stays the longest
    const e = missing.invoke(0, 'e');
    missing.ack(e, 3);
    expect(kinds(missing)).toEqual(['lost']);
    expect(describeViolations(checkHistory(missing))).toContain('e acknowledged at offset 3');

    const moved = new OperationHistory();
    const x = moved.invoke(1, 'x');
    moved.ack(x, 1);
    const y = moved.invoke(1, 'y');
    moved.fail(y, 'TIMEOUT');
    moved.read(1, 'leader', records('x', 'y')); // x at 0, not where its acknowledgement put it
    expect(kinds(moved)).toContain('lost');
  });

  test('divergent: a shorter read (a zombie leader) holding another value at an offset the longest covers', () => {
    const history = safeHistory();
    history.read(0, 'zombie', [
      { offset: 0, value: 'a' },
      { offset: 1, value: 'd' },
    ]);
    expect(kinds(history)).toEqual(['divergent']);
  });

  test('reorder: acknowledged before the other was sent, yet at a higher offset', () => {
    const history = new OperationHistory();
    const a = history.invoke(0, 'a');
    history.ack(a, 1);
    const b = history.invoke(0, 'b'); // sent after a's acknowledgement
    history.ack(b, 0);
    history.read(0, 'leader', records('b', 'a'));
    const violations = checkHistory(history);
    expect(violations.map((v) => v.kind)).toEqual(['reorder']);
    expect(violations[0]?.value).toBe('b');
  });

  test('reorder: a failed value the log has before an earlier acknowledged one', () => {
    const history = new OperationHistory();
    const a = history.invoke(0, 'a');
    history.ack(a, 1);
    const b = history.invoke(0, 'b');
    history.fail(b, 'TIMEOUT');
    history.read(0, 'leader', records('b', 'a'));
    expect(kinds(history)).toEqual(['reorder']);
  });

  test('concurrent sends may land in either order', () => {
    const history = new OperationHistory();
    const a = history.invoke(0, 'a');
    const b = history.invoke(0, 'b');
    history.ack(a, 1);
    history.ack(b, 0);
    history.read(0, 'leader', records('b', 'a'));
    expect(checkHistory(history)).toEqual([]);
  });

  test('duplicate: twice in the log but sent once; a resent value may be there twice, not three times', () => {
    const once = new OperationHistory();
    const a = once.invoke(0, 'a');
    once.ack(a, 0);
    once.read(0, 'leader', records('a', 'a'));
    expect(kinds(once)).toEqual(['duplicate']);

    const resent = new OperationHistory();
    const r = resent.invoke(0, 'r');
    resent.resend(r, 'CONNECTION_LOST');
    resent.ack(r, 1);
    resent.read(0, 'leader', records('r', 'r'));
    expect(checkHistory(resent)).toEqual([]);
    resent.read(0, 'other', records('r', 'r', 'r'));
    expect(kinds(resent)).toEqual(['duplicate']);
  });

  test('phantom: a value nobody produced to that partition', () => {
    const history = safeHistory();
    history.read(1, 'leader', records('a'));
    expect(kinds(history)).toEqual(['phantom']);
  });

  test('unsettled: a produce still pending', () => {
    const history = safeHistory();
    history.invoke(0, 'z');
    expect(kinds(history)).toEqual(['unsettled']);
  });

  test('unordered read: offsets going back', () => {
    const history = safeHistory();
    history.read(0, 'broken', [
      { offset: 1, value: 'b' },
      { offset: 0, value: 'a' },
    ]);
    expect(kinds(history)).toEqual(['unordered-read']);
  });

  test('the recorder refuses a value twice and a double settle', () => {
    const history = new OperationHistory();
    const a = history.invoke(0, 'a');
    expect(() => history.invoke(1, 'a')).toThrow(/unique/);
    history.ack(a, 0);
    expect(() => history.fail(a, 'x')).toThrow(/twice/);
    expect(history.counts()).toEqual({ invoked: 1, acked: 1, failed: 0, pending: 0, resent: 0 });
  });
});
