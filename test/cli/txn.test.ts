/**
 * Transactions over the WebSocket protocol against a broker child process: a transactional producer
 * commits, another transaction is answered by check-back (server request 65 over the same
 * connection, from a second member of the group), and `spillway txn list`, `GET /v1/transactions` and
 * `/metrics` show the open transaction with its age and checks made.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Spillway } from '../../src/client/index.js';
import { BrokerProcess, ensureBuilt, killBrokers, runCli } from './cli-process.js';

let directory: string;
let broker: BrokerProcess;

beforeAll(async () => {
  ensureBuilt();
  directory = mkdtempSync(join(tmpdir(), 'spillway-cli-txn-'));
  broker = await BrokerProcess.start(['--data-dir', directory]);
}, 120_000);
afterAll(async () => {
  await broker?.stop();
  killBrokers();
  rmSync(directory, { recursive: true, force: true });
});

async function until(condition: () => Promise<boolean>): Promise<void> {
  for (let waited = 0; !(await condition()); waited += 20) {
    if (waited > 20_000) throw new Error('condition not reached');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function values(sw: Spillway, topic: string): Promise<string[]> {
  const consumer = sw.consumer({ topics: [topic], from: 'earliest' });
  const seen: string[] = [];
  const iterator = consumer[Symbol.asyncIterator]();
  const deadline = Date.now() + 2000;
  while (Date.now() < deadline) {
    const next = await Promise.race([
      iterator.next(),
      new Promise<null>((resolve) => setTimeout(() => resolve(null), 300)),
    ]);
    if (next === null || next.done) break;
    seen.push(Buffer.from(next.value.value!).toString());
  }
  await consumer.close();
  return seen.sort();
}

describe('transactions over WebSocket, spillway txn list, HTTP and metrics', () => {
  it('commit, check-back answered by another member, and the listings', async () => {
    const sw = await Spillway.connect(broker.url);
    await sw.admin.createTopic('orders', { partitions: 2 });
    const tp = sw.producer({ group: 'shop', checkTransaction: () => 'unknown' });
    const txn = await tp.beginTransaction();
    await txn.send('orders', { key: 'a', value: 'one' });
    await txn.send('orders', { key: 'b', value: 'two' });
    expect(await txn.commit()).toMatchObject({ outcome: 'committed', messages: 2 });
    expect(await values(sw, 'orders')).toEqual(['one', 'two']);

    // Undecided, checked after 300 ms; the member that began it says 'unknown', the other 'commit'.
    const slow = sw.producer({ group: 'late', checkAfterMs: 300, checkTransaction: () => 'unknown' });
    const open = await slow.beginTransaction();
    await open.send('orders', { value: 'three' });
    const listed = await runCli(['txn', 'list', '--broker', broker.url]);
    expect(listed.code).toBe(0);
    expect(JSON.parse(listed.stdout).transactions).toMatchObject([
      { id: open.id, group: 'late', state: 'open' },
    ]);
    const http = await fetch(`http://127.0.0.1:${broker.port}/v1/transactions`);
    expect(((await http.json()) as { transactions: unknown[] }).transactions).toHaveLength(1);
    const metrics = await (await fetch(`http://127.0.0.1:${broker.port}/metrics`)).text();
    expect(metrics).toMatch(/^spillway_transactions_open 1$/m);
    const other = await Spillway.connect(broker.url);
    const asked: number[] = [];
    const member = other.producer({
      group: 'late',
      checkTransaction: (check) => {
        asked.push(check.id);
        return 'commit';
      },
    });
    await member.ready();
    await until(async () => (await sw.admin.listTransactions()).transactions.length === 0);
    expect(asked).toContain(open.id);
    expect(await values(sw, 'orders')).toEqual(['one', 'three', 'two']);
    await expect(open.rollback()).rejects.toMatchObject({ code: 'TRANSACTION_COMMITTED' });
    const after = await runCli(['txn', 'list', '--broker', broker.url]);
    expect(JSON.parse(after.stdout).stats).toMatchObject({ committed: 2, open: 0 });
    await other.close();
    await sw.close();
  }, 60_000);
});
