/**
 * The authorization table (src/protocol/opcode-access.ts) and access lists: every opcode of Opcode
 * has an entry (a new opcode without one is refused when auth is on: fail closed), and the rules
 * match exact names, prefixes and `*` as docs/SECURITY.md says.
 */
import { describe, expect, it } from 'vitest';
import { SpillwayError } from '../../src/errors.js';
import { AccessList, parseAccessRule } from '../../src/protocol/access-control.js';
import { authorize, opcodeAccess } from '../../src/protocol/opcode-access.js';
import { Opcode } from '../../src/protocol/opcodes.js';

function codeOf(run: () => void): string | null {
  try {
    run();
    return null;
  } catch (error) {
    return error instanceof SpillwayError ? error.code : 'not a SpillwayError';
  }
}

describe('opcode access table', () => {
  it('has an entry for every opcode of Opcode', () => {
    const missing = Object.entries(Opcode)
      .filter(([, code]) => !opcodeAccess.has(code))
      .map(([name]) => name);
    expect(missing).toEqual([]);
  });

  it('refuses an opcode without an entry, and server-only opcodes, even to a principal allowed everything', () => {
    const all = AccessList.allowAll();
    expect(codeOf(() => authorize(all, 'root', 63, {}))).toBe('FORBIDDEN');
    expect(codeOf(() => authorize(all, 'root', Opcode.ping, {}))).toBe('FORBIDDEN');
    expect(codeOf(() => authorize(all, 'root', Opcode.produce, { topic: 'x', partition: 0 }))).toBeNull();
    expect(codeOf(() => authorize(new AccessList([]), 'nobody', Opcode.hello, {}))).toBeNull();
  });

  it('checks the names the request carries', () => {
    const access = new AccessList([
      { resource: 'topic', name: 'orders.*', operations: ['produce'] },
      { resource: 'topic', name: 'audit', operations: ['consume'] },
      { resource: 'group', name: 'billing', operations: ['consume'] },
    ]);
    const run = (opcode: number, header: unknown) => codeOf(() => authorize(access, 'p', opcode, header));
    expect(run(Opcode.produce, { topic: 'orders.eu' })).toBeNull();
    expect(run(Opcode.produce, { topic: 'orders' })).toBe('FORBIDDEN'); // the prefix is 'orders.'
    expect(run(Opcode.produce, { topic: 'audit' })).toBe('FORBIDDEN');
    expect(run(Opcode.fetch, { topic: 'orders.eu' })).toBe('FORBIDDEN');
    expect(run(Opcode.fetch, { topic: 'audit' })).toBeNull();
    // produce and consume imply describe
    expect(run(Opcode.describeTopic, { name: 'orders.us' })).toBeNull();
    expect(run(Opcode.listOffset, { topic: 'audit' })).toBeNull();
    expect(run(Opcode.createTopic, { name: 'orders.new' })).toBe('FORBIDDEN');
    expect(run(Opcode.listTopics, {})).toBe('FORBIDDEN');
    // group requests need the group and every topic named
    expect(run(Opcode.joinGroup, { group: 'billing', topics: ['audit'] })).toBeNull();
    expect(run(Opcode.joinGroup, { group: 'billing', topics: ['audit', 'orders.eu'] })).toBe('FORBIDDEN');
    expect(run(Opcode.joinGroup, { group: 'other', topics: ['audit'] })).toBe('FORBIDDEN');
    expect(run(Opcode.commitOffsets, { group: 'billing', offsets: [{ topic: 'audit' }] })).toBeNull();
    expect(run(Opcode.commitOffsets, { group: 'billing', offsets: [{ topic: 'secret' }] })).toBe('FORBIDDEN');
    expect(run(Opcode.queueAck, { group: 'billing', receipts: ['r'] })).toBeNull();
    expect(run(Opcode.queueReceive, { group: 'billing', topic: 'audit' })).toBeNull();
    expect(
      run(Opcode.queueReceive, { group: 'billing', topic: 'audit', deadLetterTopic: 'orders.x' }),
    ).toBeNull();
    expect(run(Opcode.queueReceive, { group: 'billing', topic: 'audit', deadLetterTopic: 'audit' })).toBe(
      'FORBIDDEN',
    );
    expect(run(Opcode.queueDescribe, { group: 'billing' })).toBeNull();
    expect(run(Opcode.queueDescribe, {})).toBe('FORBIDDEN'); // all groups: cluster describe
    // transactional sends: the group, and every target (one topic, or each of parts)
    const txnAccess = new AccessList([
      { resource: 'topic', name: 'orders.*', operations: ['produce'] },
      { resource: 'group', name: 'shop', operations: ['produce'] },
    ]);
    const txn = (opcode: number, header: unknown) => codeOf(() => authorize(txnAccess, 'p', opcode, header));
    expect(txn(Opcode.txnIds, { group: 'shop', count: 16 })).toBeNull();
    expect(txn(Opcode.txnIds, { group: 'other', count: 16 })).toBe('FORBIDDEN');
    expect(txn(Opcode.txnSend, { group: 'shop', id: 1, topic: 'orders.eu', partition: 0 })).toBeNull();
    const parts = (...topics: string[]) => topics.map((topic) => ({ topic, partition: 0 }));
    expect(txn(Opcode.txnSend, { group: 'shop', id: 1, parts: parts('orders.eu', 'orders.us') })).toBeNull();
    expect(txn(Opcode.txnSend, { group: 'shop', id: 1, parts: parts('orders.eu', 'audit') })).toBe(
      'FORBIDDEN',
    );
    expect(txn(Opcode.txnSend, { group: 'shop', id: 1 })).toBe('FORBIDDEN'); // no target: the empty name
    // a malformed header is checked as the empty name: refused, never allowed by accident
    expect(run(Opcode.produce, { topic: 42 })).toBe('FORBIDDEN');
    expect(run(Opcode.produce, null)).toBe('FORBIDDEN');
  });

  it('names the principal, the operation and the resource when it refuses', () => {
    expect(() => authorize(new AccessList([]), 'svc', Opcode.deleteTopic, { name: 'orders' })).toThrow(
      "principal 'svc' may not admin topic 'orders' (deleteTopic)",
    );
  });
});

describe('access rules', () => {
  it('accept exact names, prefixes and *, and refuse anything else', () => {
    expect(parseAccessRule({ resource: 'topic', name: 'a.*', operations: ['produce'] }, 'r').name).toBe(
      'a.*',
    );
    for (const bad of [
      { resource: 'queue', name: 'a', operations: ['produce'] },
      { resource: 'topic', name: 'a*b', operations: ['produce'] },
      { resource: 'topic', name: 'a', operations: [] },
      { resource: 'topic', name: 'a', operations: ['write'] },
      { resource: 'cluster', name: 'x', operations: ['admin'] },
      { resource: 'topic', name: 'a', operations: ['produce'], extra: 1 },
      'topic:a:produce',
    ]) {
      expect(codeOf(() => parseAccessRule(bad, 'rule'))).toBe('INVALID_ARGUMENT');
    }
  });

  it('* matches every name, a principal without rules nothing', () => {
    const any = new AccessList([{ resource: 'group', name: '*', operations: ['consume'] }]);
    expect(any.allows('group', 'consume', 'anything')).toBe(true);
    expect(any.allows('group', 'describe', 'anything')).toBe(true);
    expect(any.allows('group', 'admin', 'anything')).toBe(false);
    expect(any.allows('topic', 'consume', 'anything')).toBe(false);
    expect(new AccessList([]).allows('topic', 'describe', 't')).toBe(false);
  });
});
