/**
 * docs/IDEMPOTENCY.md: its examples (test/docs/idempotency-examples.ts, quoted verbatim in the
 * document) run against a real broker and a real SQLite file, with EVERY message delivered twice,
 * and the account balances must be those of one delivery each. A naive handler under the same
 * deliveries gets them wrong (so the check can fail).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, test } from 'vitest';
import type { RunOptions, RunSummary, Spillway } from '../../src/client/index.js';
import { connect, onCleanup, openBroker, waitFor } from '../client/helpers.js';
import {
  bankStore,
  createBank,
  dedupStoreHandler,
  optimisticLockHandler,
  transferOf,
  uniqueConstraintHandler,
  type VersionedChange,
} from './idempotency-examples.js';

const documentText = readFileSync(new URL('../../docs/IDEMPOTENCY.md', import.meta.url), 'utf8');
const examplesText = readFileSync(new URL('./idempotency-examples.ts', import.meta.url), 'utf8');

const accounts = ['alice', 'bob', 'carol', 'dave'];
const transfersCount = 100;

/** Transfer i credits i+1 to accounts[i % 4]. */
function expectedBalances(): Record<string, number> {
  const balances: Record<string, number> = {};
  for (let index = 0; index < transfersCount; index++) {
    const account = accounts[index % accounts.length]!;
    balances[account] = (balances[account] ?? 0) + index + 1;
  }
  return balances;
}

function bank(): Database.Database {
  const directory = mkdtempSync(join(tmpdir(), 'spillway-bank-'));
  const db = new Database(join(directory, 'bank.db'));
  db.pragma('journal_mode = WAL');
  createBank(db);
  onCleanup(() => {
    db.close();
    rmSync(directory, { recursive: true, force: true });
  });
  return db;
}

function balances(db: Database.Database): Record<string, number> {
  const rows = db.prepare('SELECT name, balance FROM accounts ORDER BY name').all() as Array<{
    name: string;
    balance: number;
  }>;
  return Object.fromEntries(rows.map((row) => [row.name, row.balance]));
}

async function setup(): Promise<Spillway> {
  const broker = await openBroker();
  const sw = await connect(broker);
  await sw.admin.createTopic('transfers', { partitions: 3 });
  return sw;
}

/** Each transfer produced twice in a row (keyed by account): every message is delivered twice. */
async function produceTransfersTwice(sw: Spillway): Promise<void> {
  const producer = sw.producer({ lingerMs: 1 });
  const sends: Array<Promise<unknown>> = [];
  for (let index = 0; index < transfersCount; index++) {
    const account = accounts[index % accounts.length]!;
    const value = JSON.stringify({ id: `transfer-${index}`, account, amount: index + 1 });
    for (let copy = 0; copy < 2; copy++) sends.push(producer.send('transfers', { key: account, value }));
  }
  await Promise.all(sends);
  await producer.close();
}

/** Runs a group consumer until `deliveries` handler calls or idempotency keys were counted, then closes it. */
async function runGroup<Extra extends object>(
  sw: Spillway,
  group: string,
  options: RunOptions<Extra>,
  done: () => boolean,
): Promise<RunSummary> {
  const consumer = sw.consumer({ group, topics: ['transfers'], from: 'earliest', maxWaitMs: 50 });
  const running = consumer.run(options);
  let failure: unknown = null;
  running.catch((error: unknown) => {
    failure = error;
  });
  await waitFor(() => failure !== null || done(), 30_000);
  await consumer.close();
  return running;
}

describe('docs/IDEMPOTENCY.md examples, every message delivered twice', () => {
  test('the document quotes every example region of idempotency-examples.ts verbatim', () => {
    const regions = [...examplesText.matchAll(/^\/\/ example: ([\w-]+)\n([\s\S]*?)^\/\/ end example$/gm)];
    expect(regions.map((region) => region[1])).toEqual([
      'schema',
      'unique-constraint',
      'optimistic-lock',
      'dedup-store',
    ]);
    for (const [, name, body] of regions) expect(documentText, name).toContain(body!.trimEnd());
  });

  test('a naive handler double-credits: the balances check catches duplicates', async () => {
    const sw = await setup();
    await produceTransfersTwice(sw);
    const db = bank();
    const credit = db.prepare(
      'INSERT INTO accounts (name, balance) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET balance = balance + excluded.balance',
    );
    let calls = 0;
    await runGroup(
      sw,
      'bank',
      {
        handler: (message) => {
          calls++;
          const transfer = transferOf(message);
          credit.run(transfer.account, transfer.amount);
        },
      },
      () => calls >= 2 * transfersCount,
    );
    const doubled = Object.fromEntries(
      Object.entries(expectedBalances()).map(([name, sum]) => [name, 2 * sum]),
    );
    expect(balances(db)).toEqual(doubled);
  });

  test('(1) unique constraint: each transfer credited once', async () => {
    const sw = await setup();
    await produceTransfersTwice(sw);
    const db = bank();
    const handle = uniqueConstraintHandler(db);
    let calls = 0;
    const summary = await runGroup(
      sw,
      'bank',
      {
        handler: (message) => {
          calls++;
          handle(message);
        },
      },
      () => calls >= 2 * transfersCount,
    );
    expect(summary.handled).toBe(2 * transfersCount); // both copies ran; the second changed nothing
    expect(balances(db)).toEqual(expectedBalances());
    expect((db.prepare('SELECT count(*) AS n FROM payments').get() as { n: number }).n).toBe(transfersCount);
  });

  test('(2) optimistic lock: every change applied once when the group is replayed from earliest', async () => {
    const sw = await setup();
    const producer = sw.producer({ lingerMs: 1 });
    const versions = new Map<string, number>();
    const sends: Array<Promise<unknown>> = [];
    for (let index = 0; index < transfersCount; index++) {
      const account = accounts[index % accounts.length]!;
      const version = (versions.get(account) ?? 0) + 1;
      versions.set(account, version);
      const change: VersionedChange = { account, version, amount: index + 1 };
      sends.push(producer.send('transfers', { key: account, value: JSON.stringify(change) }));
    }
    await Promise.all(sends);
    await producer.close();
    const db = bank();
    const insert = db.prepare('INSERT INTO accounts (name) VALUES (?)');
    for (const account of accounts) insert.run(account);
    const handle = optimisticLockHandler(db);
    let calls = 0;
    const handler = (message: Parameters<typeof handle>[0]): void => {
      calls++;
      handle(message);
    };
    // First delivery of each message to group 'bank', then the whole topic again to 'bank-replay'.
    await runGroup(sw, 'bank', { handler }, () => calls >= transfersCount);
    const replay = await runGroup(sw, 'bank-replay', { handler }, () => calls >= 2 * transfersCount);
    expect(replay).toMatchObject({ handled: transfersCount, failed: 0 });
    expect(balances(db)).toEqual(expectedBalances());
    const rows = db.prepare('SELECT name, version FROM accounts').all() as Array<{
      name: string;
      version: number;
    }>;
    for (const row of rows) expect(row.version).toBe(versions.get(row.name));
  });

  test('(2) optimistic lock: a change ahead of its predecessor is refused and comes again', () => {
    const db = bank();
    db.prepare('INSERT INTO accounts (name) VALUES (?)').run('alice');
    const handle = optimisticLockHandler(db);
    const message = (change: VersionedChange) =>
      ({ value: Buffer.from(JSON.stringify(change)) }) as Parameters<typeof handle>[0];
    expect(() => handle(message({ account: 'alice', version: 2, amount: 5 }))).toThrow('must wait');
    handle(message({ account: 'alice', version: 1, amount: 7 }));
    handle(message({ account: 'alice', version: 2, amount: 5 }));
    handle(message({ account: 'alice', version: 1, amount: 7 }));
    expect(balances(db)).toEqual({ alice: 12 });
  });

  test('(3) dedup store: each transfer credited once, also when a handler fails after its commit', async () => {
    const sw = await setup();
    await produceTransfersTwice(sw);
    const db = bank();
    const store = bankStore(db);
    const keyed = new Map<string, number>();
    let crashes = 0;
    const summary = await runGroup(
      sw,
      'bank',
      {
        idempotency: store,
        idempotencyKey: (message) => {
          // The transfer id is the business id: both copies have it.
          const id = transferOf(message).id;
          keyed.set(id, (keyed.get(id) ?? 0) + 1);
          return id;
        },
        handler: (message, context) => {
          dedupStoreHandler(message, context);
          // As if the process died after the commit and before the ack: the message comes again.
          if (transferOf(message).id === 'transfer-42' && crashes++ === 0)
            throw new Error('crash after commit');
        },
      },
      () => keyed.size === transfersCount && [...keyed.values()].every((count) => count >= 2),
    );
    expect(balances(db)).toEqual(expectedBalances());
    expect(summary.handled).toBe(transfersCount - 1); // transfer-42 failed, then came again as a duplicate
    expect(summary.failed).toBe(1);
    expect(summary.skipped).toBeGreaterThanOrEqual(transfersCount + 1);
    const recorded = db.prepare('SELECT count(*) AS n FROM bank_processed').get() as { n: number };
    expect(recorded.n).toBe(transfersCount);
  });
});
