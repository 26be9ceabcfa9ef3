/**
 * Numbered TXN_SENDs (`seq`, docs/PROTOCOL.md): a resend of a numbered request — what a client's
 * cluster transport does after its coordinator moved and the answer was lost — is answered with the
 * halves stored the first time and not stored again, also after a restart (the number is kept with
 * the half in `__txn_half`); and the copy stamp a cluster coordinator puts on each record
 * (forwarded-commit.ts) is found again by the recovery scan's reader.
 */
import { describe, expect, it } from 'vitest';
import { forwardedStampOf, stampForwardedBatch } from '../../../src/broker/transactions/forwarded-commit.js';
import { InProcessTransport } from '../../../src/client/in-process-transport.js';
import { decodeRecords, encodeBatch } from '../../../src/format/record-batch.js';
import { Opcode } from '../../../src/protocol/opcodes.js';
import { openBroker, temporaryDirectory, valuesOf } from '../helpers.js';

describe('numbered transactional sends', () => {
  it('a resent numbered send is answered with the first halves and committed once, also after a restart', async () => {
    const dataDir = temporaryDirectory();
    let broker = await openBroker(dataDir, { durability: 'interval' });
    await broker.topics.create('orders', { partitions: 2 });
    let transport = await InProcessTransport.connect(broker);
    const { from } = (await transport.request(Opcode.txnIds, { group: 'g', count: 4 })).header as {
      from: number;
    };
    const single = { id: from, group: 'g', seq: 0, begin: {}, topic: 'orders', partition: 0 };
    const first = (await transport.request(Opcode.txnSend, single, encodeBatch([{ value: 'a' }]))).header;
    const again = (await transport.request(Opcode.txnSend, single, encodeBatch([{ value: 'a' }]))).header;
    expect(again).toEqual(first);
    const parts = {
      id: from,
      group: 'g',
      seq: 1,
      parts: [
        { topic: 'orders', partition: 0 },
        { topic: 'orders', partition: 1 },
      ],
    };
    const body = Buffer.concat([encodeBatch([{ value: 'b' }]), encodeBatch([{ value: 'c' }])]);
    const stored = (await transport.request(Opcode.txnSend, parts, body)).header;
    await transport.close();
    await broker.close();
    // After a restart the numbers come back from `__txn_half`: the resend is still recognised.
    broker = await openBroker(dataDir, { durability: 'interval' });
    transport = await InProcessTransport.connect(broker);
    expect((await transport.request(Opcode.txnSend, parts, body)).header).toEqual(stored);
    expect((await transport.request(Opcode.txnSend, single, encodeBatch([{ value: 'a' }]))).header).toEqual(
      first,
    );
    // A new number is a new half.
    await transport.request(
      Opcode.txnSend,
      { ...single, seq: 2, begin: undefined },
      encodeBatch([{ value: 'd' }]),
    );
    const end = (await transport.request(Opcode.txnEnd, { id: from, group: 'g', decision: 'commit' })).header;
    expect(end).toMatchObject({ outcome: 'committed', messages: 4 });
    const values: string[] = [];
    for (const partition of [0, 1]) {
      const result = await broker.messages.fetch('orders', partition, 0, { maxBytes: 1 << 20, maxWaitMs: 0 });
      values.push(...valuesOf(result.records));
    }
    expect(values.sort()).toEqual(['a', 'b', 'c', 'd']);
    await transport.close();
    await broker.close();
  });

  it('a copied half carries its stamp on every record, keys, values and headers unchanged', () => {
    const batch = encodeBatch([
      { key: 'k1', value: 'v1', headers: { h: 'x' }, timestamp: 1000 },
      { value: 'v2', timestamp: 1001 },
    ]);
    const copy = stampForwardedBatch(batch, 42, 7);
    expect(forwardedStampOf(copy)).toEqual({ id: 42, index: 7 });
    expect(forwardedStampOf(batch)).toBeNull();
    const records = [...decodeRecords(copy)].map((record) => ({
      key: record.key === null ? null : Buffer.from(record.key).toString(),
      value: Buffer.from(record.value!).toString(),
      timestamp: record.timestamp,
      headers: record.headers.map(([name, value]) => [name, Buffer.from(value!).toString()]),
    }));
    expect(records).toEqual([
      {
        key: 'k1',
        value: 'v1',
        timestamp: 1000,
        headers: [
          ['h', 'x'],
          ['sw-txn', '42:7'],
        ],
      },
      { key: null, value: 'v2', timestamp: 1001, headers: [['sw-txn', '42:7']] },
    ]);
  });
});
