/**
 * The idempotency stores against real backends: memoryStore, sqliteStore on a real file database
 * (better-sqlite3) and redisStore on a private redis-server. The contract tests run against every
 * store (as NATS runs its store tests against both stores); then what is particular to each.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  DuplicateDeliveryError,
  type IdempotencyStore,
  IdempotencyStoreError,
  memoryStore,
  redisStore,
  SpillwayError,
  sqliteStore,
} from '../../../src/client/index.js';
import {
  idempotencyMemoryIdsMax,
  idempotencySqlitePurgeRowsMax,
  idempotencyTtlMsMax,
} from '../../../src/limits.js';
import { onCleanup } from '../helpers.js';
import { redisMissing, redisSkipReason, startRedis, type TestRedis } from './redis-server.js';

function temporaryDirectory(): string {
  const directory = mkdtempSync(join(tmpdir(), 'spillway-idempotency-'));
  onCleanup(() => rmSync(directory, { recursive: true, force: true }));
  return directory;
}

function expectCode(call: () => unknown, code: string): void {
  let thrown: unknown = null;
  try {
    call();
  } catch (error) {
    thrown = error;
  }
  expect(thrown).toBeInstanceOf(SpillwayError);
  expect((thrown as SpillwayError).code).toBe(code);
}

let redis: TestRedis | null = null;
if (redisMissing) console.log(`redis store tests skipped: ${redisSkipReason}`);
beforeAll(async () => {
  if (!redisMissing) redis = await startRedis();
});
afterAll(async () => {
  await redis?.stop();
});

let redisPrefixNumber = 0;
const stores: Array<[string, () => Promise<IdempotencyStore>]> = [
  ['memory', async () => memoryStore()],
  [
    'sqlite',
    async () => {
      const store = sqliteStore(join(temporaryDirectory(), 'processed.db'));
      onCleanup(() => store.close());
      return store;
    },
  ],
];
if (!redisMissing) {
  stores.push([
    'redis',
    async () => redisStore(await redis!.client(), { prefix: `test${++redisPrefixNumber}:` }),
  ]);
}

describe.each(stores)('%s store: the contract', (_name, makeStore) => {
  test('an id is unseen until recorded, then seen; recording twice is harmless; ids are independent', async () => {
    const store = await makeStore();
    await store.open?.();
    expect(await store.seen('orders/id/a')).toBe(false);
    await store.record('orders/id/a');
    expect(await store.seen('orders/id/a')).toBe(true);
    await store.record('orders/id/a');
    expect(await store.seen('orders/id/a')).toBe(true);
    expect(await store.seen('orders/id/b')).toBe(false);
    expect(await store.seen('orders/0/1')).toBe(false);
  });

  test('every id delivered twice: the second delivery of each is seen, the first of none', async () => {
    const store = await makeStore();
    await store.open?.();
    const firstSeen: boolean[] = [];
    const secondSeen: boolean[] = [];
    for (let index = 0; index < 500; index++) {
      const id = `t/${index % 3}/${index}`;
      firstSeen.push(await store.seen(id));
      await store.record(id);
      secondSeen.push(await store.seen(id));
    }
    expect(firstSeen.every((seen) => !seen)).toBe(true);
    expect(secondSeen.every((seen) => seen)).toBe(true);
  });

  test('ids with any characters, up to the key bound, are kept apart', async () => {
    const store = await makeStore();
    await store.open?.();
    const ids = ['t/id/ä €', "t/id/'; DROP TABLE x; --", 't/id/a\u0000b', `t/id/${'x'.repeat(1000)}`];
    for (const id of ids) await store.record(id);
    for (const id of ids) expect(await store.seen(id)).toBe(true);
    expect(await store.seen('t/id/a')).toBe(false);
    expect(await store.seen(`t/id/${'x'.repeat(999)}`)).toBe(false);
  });
});

describe('memoryStore', () => {
  test('keeps at most max ids, least recently used out first', async () => {
    const store = memoryStore({ max: 3 });
    for (const id of ['a', 'b', 'c']) await store.record(id);
    expect(await store.seen('a')).toBe(true); // a is now the most recent
    await store.record('d');
    expect(store.size).toBe(3);
    expect(await store.seen('b')).toBe(false);
    expect(await store.seen('a')).toBe(true);
    expect(await store.seen('c')).toBe(true);
    expect(await store.seen('d')).toBe(true);
  });

  test('an id older than ttlMs counts as unseen', async () => {
    let now = 1_000_000;
    const store = memoryStore({ ttlMs: 100, now: () => now });
    await store.record('a');
    now += 99;
    expect(await store.seen('a')).toBe(true);
    now += 1;
    expect(await store.seen('a')).toBe(false);
    expect(store.size).toBe(0);
  });

  test('bad options are INVALID_ARGUMENT', () => {
    expectCode(() => memoryStore({ max: 0 }), 'INVALID_ARGUMENT');
    expectCode(() => memoryStore({ max: idempotencyMemoryIdsMax + 1 }), 'INVALID_ARGUMENT');
    expectCode(() => memoryStore({ ttlMs: 1.5 }), 'INVALID_ARGUMENT');
    expectCode(() => memoryStore({ ttlMs: idempotencyTtlMsMax + 1 }), 'INVALID_ARGUMENT');
    expectCode(() => memoryStore(null as unknown as object), 'INVALID_ARGUMENT');
  });
});

describe('sqliteStore on a file database', () => {
  function accounts(path: string): Database.Database {
    const db = new Database(path);
    db.exec('CREATE TABLE IF NOT EXISTS accounts (name TEXT PRIMARY KEY, balance INTEGER NOT NULL)');
    db.prepare("INSERT OR IGNORE INTO accounts VALUES ('alice', 100)").run();
    onCleanup(() => {
      db.close();
    });
    return db;
  }
  const balance = (db: Database.Database): number =>
    (db.prepare("SELECT balance FROM accounts WHERE name = 'alice'").get() as { balance: number }).balance;

  test('ids survive closing and reopening the file; the table is named by the option', async () => {
    const path = join(temporaryDirectory(), 'ids.db');
    const first = sqliteStore(path, { table: 'billing_processed' });
    await first.record('t/0/1');
    await first.close();
    const second = sqliteStore(path, { table: 'billing_processed' });
    onCleanup(() => second.close());
    expect(await second.seen('t/0/1')).toBe(true);
    expect(await second.seen('t/0/2')).toBe(false);
    const other = sqliteStore(path, { table: 'shipping_processed' });
    onCleanup(() => other.close());
    expect(await other.seen('t/0/1')).toBe(false);
    expect(second.database.pragma('journal_mode', { simple: true })).toBe('wal');
  });

  test("the handler's writes and the id commit in one transaction", async () => {
    const db = accounts(join(temporaryDirectory(), 'bank.db'));
    const store = sqliteStore(db);
    await store.open();
    const handling = store.handling('t/id/transfer-1');
    const answer = handling.context.transaction((tx) => {
      tx.prepare("UPDATE accounts SET balance = balance - 30 WHERE name = 'alice'").run();
      return 'done';
    });
    expect(answer).toBe('done');
    expect(handling.outcome()).toBe('recorded');
    expect(balance(db)).toBe(70);
    expect(await store.seen('t/id/transfer-1')).toBe(true);
  });

  test('a throwing transaction rolls back the writes and the id together', async () => {
    const db = accounts(join(temporaryDirectory(), 'bank.db'));
    const store = sqliteStore(db);
    await store.open();
    const handling = store.handling('t/id/transfer-2');
    expect(() =>
      handling.context.transaction((tx) => {
        tx.prepare("UPDATE accounts SET balance = balance - 30 WHERE name = 'alice'").run();
        throw new Error('insufficient funds');
      }),
    ).toThrow('insufficient funds');
    expect(handling.outcome()).toBe('unrecorded');
    expect(balance(db)).toBe(100);
    expect(await store.seen('t/id/transfer-2')).toBe(false);
  });

  test('a transaction for an id already recorded (by another process) throws DUPLICATE_DELIVERY and writes nothing', async () => {
    const path = join(temporaryDirectory(), 'bank.db');
    const db = accounts(path);
    const mine = sqliteStore(db);
    const theirs = sqliteStore(path); // another connection to the same file, as another process has
    onCleanup(() => theirs.close());
    await mine.open();
    await theirs.open();
    theirs.handling('t/id/transfer-3').context.transaction((tx) => {
      tx.prepare("UPDATE accounts SET balance = balance - 30 WHERE name = 'alice'").run();
    });
    const handling = mine.handling('t/id/transfer-3');
    let ran = false;
    let thrown: unknown = null;
    try {
      handling.context.transaction((tx) => {
        ran = true;
        tx.prepare("UPDATE accounts SET balance = balance - 30 WHERE name = 'alice'").run();
      });
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(DuplicateDeliveryError);
    expect((thrown as DuplicateDeliveryError).code).toBe('DUPLICATE_DELIVERY');
    expect(ran).toBe(false);
    expect(handling.outcome()).toBe('duplicate');
    expect(balance(db)).toBe(70);
  });

  test('transaction is once per message', async () => {
    const store = sqliteStore(join(temporaryDirectory(), 'ids.db'));
    onCleanup(() => store.close());
    await store.open();
    const handling = store.handling('x');
    handling.context.transaction(() => undefined);
    expectCode(() => handling.context.transaction(() => undefined), 'INVALID_ARGUMENT');
  });

  test('expired ids count as unseen, are recorded again, and are purged in bounded steps', async () => {
    let now = 1_000_000;
    // A database of ours without fsync per commit (thousands of records): the store keeps our settings.
    const db = new Database(join(temporaryDirectory(), 'ids.db'));
    db.pragma('synchronous = OFF');
    onCleanup(() => {
      db.close();
    });
    const store = sqliteStore(db, { ttlMs: 1000, now: () => now });
    await store.record('old');
    now += 1000;
    expect(await store.seen('old')).toBe(false);
    await store.record('old');
    expect(await store.seen('old')).toBe(true);
    for (let index = 0; index < 2500; index++) await store.record(`t/0/${index}`);
    now += 1000;
    const count = (): number =>
      (store.database.prepare('SELECT count(*) AS n FROM spillway_processed').get() as { n: number }).n;
    // Two purges ran during the records (at 1000 and 2000), with nothing expired yet but 'old' (re-recorded).
    expect(count()).toBe(2501);
    expect(store.purgeExpired()).toBe(idempotencySqlitePurgeRowsMax);
    expect(count()).toBe(2501 - idempotencySqlitePurgeRowsMax);
    // A record triggers a purge every idempotencySqlitePurgeRowsMax records.
    for (let index = 0; index < idempotencySqlitePurgeRowsMax; index++) await store.record(`t/1/${index}`);
    expect(count()).toBe(2501 - 2 * idempotencySqlitePurgeRowsMax + idempotencySqlitePurgeRowsMax);
  });

  test('typed errors: bad options, a path that cannot be opened, a closed store', async () => {
    expectCode(() => sqliteStore(''), 'INVALID_ARGUMENT');
    expectCode(() => sqliteStore({} as unknown as string), 'INVALID_ARGUMENT');
    expectCode(() => sqliteStore('x.db', { table: 'bad name; DROP TABLE x' }), 'INVALID_ARGUMENT');
    expectCode(() => sqliteStore('x.db', { ttlMs: 0 }), 'INVALID_ARGUMENT');
    const unopenable = sqliteStore(join(temporaryDirectory(), 'missing-directory', 'ids.db'));
    const openError = await unopenable.seen('a').catch((error: unknown) => error);
    expect(openError).toBeInstanceOf(IdempotencyStoreError);
    expect((openError as IdempotencyStoreError).code).toBe('IDEMPOTENCY_STORE');
    const store = sqliteStore(join(temporaryDirectory(), 'ids.db'));
    await store.record('a');
    await store.close();
    const closedError = await store.seen('a').catch((error: unknown) => error);
    expect((closedError as IdempotencyStoreError).code).toBe('IDEMPOTENCY_STORE');
  });
});

describe.skipIf(redisMissing)(`redisStore on a real redis-server (skipped if ${redisSkipReason})`, () => {
  test('record sets the key with NX and a PX expiry of ttlMs under the prefix', async () => {
    const client = await redis!.client();
    const store = redisStore(client, { ttlMs: 60_000, prefix: 'px-test:' });
    await store.open();
    await store.record('t/id/a');
    const first = await client.get('px-test:t/id/a');
    const ttl = await client.pTTL('px-test:t/id/a');
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(60_000);
    await store.record('t/id/a'); // NX: the first record's value stays
    expect(await client.get('px-test:t/id/a')).toBe(first);
    expect(await client.exists('t/id/a')).toBe(0);
  });

  test('a key deleted (expired) in Redis counts as unseen', async () => {
    const client = await redis!.client();
    const store = redisStore(client, { prefix: 'expiry-test:' });
    await store.record('t/0/7');
    expect(await store.seen('t/0/7')).toBe(true);
    await client.del('expiry-test:t/0/7');
    expect(await store.seen('t/0/7')).toBe(false);
  });

  test('typed errors: bad client or options; a server gone is IDEMPOTENCY_STORE', async () => {
    expectCode(() => redisStore({} as never), 'INVALID_ARGUMENT');
    expectCode(() => redisStore(null as never), 'INVALID_ARGUMENT');
    const own = await startRedis();
    try {
      const store = redisStore(await own.client(), { ttlMs: 1000 });
      expectCode(() => redisStore({ sendCommand: async () => null }, { ttlMs: -1 }), 'INVALID_ARGUMENT');
      await store.open();
      await own.stop();
      const error = await store.seen('a').catch((thrown: unknown) => thrown);
      expect(error).toBeInstanceOf(IdempotencyStoreError);
      expect((error as IdempotencyStoreError).code).toBe('IDEMPOTENCY_STORE');
      expect((error as IdempotencyStoreError).retriable).toBe(true);
    } finally {
      await own.stop();
    }
  });
});
