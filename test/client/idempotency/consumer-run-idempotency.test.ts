/**
 * consumer.run({ handler | worker, idempotency: store }) against a real broker, with every message
 * delivered twice: each produced twice with the same msgId, or a group replayed from earliest. The
 * business result (per-account totals) must be that of one delivery each, for every store (memory,
 * SQLite on a file, Redis on a private redis-server) and every consumer kind (log, group, shared
 * queue), in this thread and in the worker pool (which runs the compiled dist/: build first).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  type ConsumedMessage,
  defaultIdempotencyKey,
  type IdempotencyStore,
  memoryStore,
  type RunOptions,
  type RunSummary,
  redisStore,
  type Spillway,
  SpillwayError,
  sqliteStore,
} from '../../../src/client/index.js';
import { msgIdHeader } from '../../../src/protocol/reserved-headers.js';
import { connect, onCleanup, openBroker, waitFor } from '../helpers.js';
import { redisMissing, redisSkipReason, startRedis, type TestRedis } from './redis-server.js';

const accounts = ['alice', 'bob', 'carol', 'dave', 'erin'];
const messagesCount = 120;

/** Message i moves i+1 units to accounts[i % 5]: the expected totals of one delivery each. */
function expectedTotals(): Record<string, number> {
  const totals: Record<string, number> = {};
  for (let index = 0; index < messagesCount; index++) {
    const account = accounts[index % accounts.length]!;
    totals[account] = (totals[account] ?? 0) + index + 1;
  }
  return totals;
}

function temporaryDirectory(): string {
  const directory = mkdtempSync(join(tmpdir(), 'spillway-idempotency-run-'));
  onCleanup(() => rmSync(directory, { recursive: true, force: true }));
  return directory;
}

async function setup(partitions = 3): Promise<Spillway> {
  const broker = await openBroker();
  const sw = await connect(broker);
  await sw.admin.createTopic('transfers', { partitions });
  return sw;
}

/** Every message twice, the copies adjacent, with the same msgId (what a retrying producer leaves). */
async function produceEachTwice(sw: Spillway): Promise<void> {
  const producer = sw.producer({ lingerMs: 1 });
  const sends: Array<Promise<unknown>> = [];
  for (let index = 0; index < messagesCount; index++) {
    const account = accounts[index % accounts.length]!;
    const message = {
      key: account,
      value: JSON.stringify({ account, amount: index + 1 }),
      headers: { [msgIdHeader]: `transfer-${index}` },
    };
    sends.push(producer.send('transfers', message), producer.send('transfers', message));
  }
  await Promise.all(sends);
  await producer.close();
}

function transferOf(message: { value: Buffer | null }): { account: string; amount: number } {
  return JSON.parse(message.value!.toString()) as { account: string; amount: number };
}

/** What the tests use of a log, group or queue consumer. */
type AnyConsumer = Pick<ReturnType<Spillway['consumer']>, 'run' | 'close'>;

/**
 * Runs until each of `messagesCount` idempotency keys was taken at least `copies` times (the key
 * function sees each delivery that reaches the store once) and `alsoDone()` holds, then closes the
 * consumer and answers the run's summary (what was running when it closed is finished first).
 */
async function runUntil<Extra extends object>(
  consumer: AnyConsumer,
  copies: number,
  options: RunOptions<Extra>,
  alsoDone: () => boolean = () => true,
): Promise<RunSummary> {
  const keyed = new Map<string, number>();
  const keyOf = options.idempotencyKey ?? defaultIdempotencyKey;
  const running = consumer.run({
    ...options,
    idempotencyKey: (message) => {
      const key = keyOf(message);
      if (key !== '') keyed.set(key, (keyed.get(key) ?? 0) + 1); // '': a bad key, refused by the run
      return key;
    },
  });
  let failure: unknown = null;
  running.catch((error: unknown) => {
    failure = error;
  });
  await waitFor(
    () =>
      failure !== null ||
      (keyed.size >= messagesCount && [...keyed.values()].every((count) => count >= copies) && alsoDone()),
    30_000,
  );
  await consumer.close();
  return running;
}

let redis: TestRedis | null = null;
if (redisMissing) console.log(`redis idempotency tests skipped: ${redisSkipReason}`);
beforeAll(async () => {
  if (!redisMissing) redis = await startRedis();
});
afterAll(async () => {
  await redis?.stop();
});

let prefixNumber = 0;
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
  stores.push(['redis', async () => redisStore(await redis!.client(), { prefix: `run${++prefixNumber}:` })]);
}

const consumerKinds: Array<[string, (sw: Spillway) => AnyConsumer]> = [
  ['log', (sw) => sw.consumer({ topics: ['transfers'], from: 'earliest', maxWaitMs: 50 })],
  [
    'group',
    (sw) => sw.consumer({ group: 'billing', topics: ['transfers'], from: 'earliest', maxWaitMs: 50 }),
  ],
  [
    'shared queue',
    (sw) => sw.consumer({ group: 'billing', topics: ['transfers'], mode: 'shared', maxWaitMs: 50 }),
  ],
];

describe.each(stores)('%s store: every message delivered twice', (_storeName, makeStore) => {
  test.each(consumerKinds)(
    '%s consumer, handler: each transfer applied once',
    async (_kind, makeConsumer) => {
      const sw = await setup();
      await produceEachTwice(sw);
      const store = await makeStore();
      const totals: Record<string, number> = {};
      const summary = await runUntil(makeConsumer(sw), 2, {
        concurrency: 4,
        idempotency: store,
        handler: async (message, context) => {
          expect(context.idempotencyKey).toBe(`transfers/id/${message.headers[msgIdHeader]!.toString()}`);
          const { account, amount } = transferOf(message);
          totals[account] = (totals[account] ?? 0) + amount;
        },
      });
      expect(totals).toEqual(expectedTotals());
      expect(summary).toMatchObject({ handled: messagesCount, skipped: messagesCount, failed: 0 });
      for (let index = 0; index < messagesCount; index++)
        expect(await store.seen(`transfers/id/transfer-${index}`)).toBe(true);
    },
  );

  test('worker pool: the main thread skips duplicates and records what the workers handled', async () => {
    const sw = await setup();
    await produceEachTwice(sw);
    const directory = temporaryDirectory();
    const log = join(directory, 'applied.jsonl');
    writeFileSync(log, '');
    const module = join(directory, 'handler.mjs');
    writeFileSync(
      module,
      `import { appendFileSync } from 'node:fs';
export function handler(message) { appendFileSync(${JSON.stringify(log)}, message.value.toString() + '\\n'); }
`,
    );
    const summary = await runUntil(
      sw.consumer({ topics: ['transfers'], from: 'earliest', maxWaitMs: 50 }),
      2,
      {
        worker: pathToFileURL(module),
        threads: 2,
        batchMessages: 16,
        idempotency: await makeStore(),
      },
    );
    const totals: Record<string, number> = {};
    for (const line of readFileSync(log, 'utf8')
      .split('\n')
      .filter((text) => text.length > 0)) {
      const { account, amount } = JSON.parse(line) as { account: string; amount: number };
      totals[account] = (totals[account] ?? 0) + amount;
    }
    expect(totals).toEqual(expectedTotals());
    expect(summary).toMatchObject({ handled: messagesCount, skipped: messagesCount, failed: 0 });
  });

  test('a group replayed from earliest by a new group with the same store: every message skipped (key: topic/partition/offset)', async () => {
    const sw = await setup();
    const producer = sw.producer({ lingerMs: 1 });
    await Promise.all(
      Array.from({ length: messagesCount }, (_, index) =>
        producer.send('transfers', {
          key: accounts[index % accounts.length]!,
          value: JSON.stringify({ account: accounts[index % accounts.length], amount: index + 1 }),
        }),
      ),
    );
    await producer.close();
    const store = await makeStore();
    const totals: Record<string, number> = {};
    const handler = (message: ConsumedMessage): void => {
      const { account, amount } = transferOf(message);
      totals[account] = (totals[account] ?? 0) + amount;
    };
    const group = (name: string) =>
      sw.consumer({ group: name, topics: ['transfers'], from: 'earliest', maxWaitMs: 50 });
    const first = await runUntil(group('billing'), 1, { idempotency: store, handler });
    const replay = await runUntil(group('billing-replay'), 1, { idempotency: store, handler });
    expect(totals).toEqual(expectedTotals());
    expect(first).toMatchObject({ handled: messagesCount, skipped: 0 });
    expect(replay).toMatchObject({ handled: 0, skipped: messagesCount });
    expect(await store.seen('transfers/0/0')).toBe(true);
  });
});

describe('consumer.run with an idempotency store', () => {
  test('two deliveries of one id running at once: the handler runs once, never concurrently for an id', async () => {
    const sw = await setup(1);
    await produceEachTwice(sw);
    const running = new Map<string, number>();
    const calls = new Map<string, number>();
    let maxPerId = 0;
    let maxRunning = 0;
    let inFlight = 0;
    const summary = await runUntil(
      sw.consumer({ topics: ['transfers'], from: 'earliest', maxWaitMs: 50 }),
      2,
      {
        concurrency: 16,
        ordering: 'none',
        idempotency: memoryStore(),
        handler: async (_message, { idempotencyKey }) => {
          const id = idempotencyKey!;
          calls.set(id, (calls.get(id) ?? 0) + 1);
          const here = (running.get(id) ?? 0) + 1;
          running.set(id, here);
          maxPerId = Math.max(maxPerId, here);
          maxRunning = Math.max(maxRunning, ++inFlight);
          for (let tick = 0; tick < 5; tick++) await new Promise((resolve) => setImmediate(resolve));
          running.set(id, here - 1);
          inFlight--;
        },
      },
    );
    expect(maxRunning).toBeGreaterThan(1); // handlers did overlap
    expect(maxPerId).toBe(1);
    expect([...calls.values()].every((count) => count === 1)).toBe(true);
    expect(calls.size).toBe(messagesCount);
    expect(summary).toMatchObject({ handled: messagesCount, skipped: messagesCount });
  });

  test('a failed handler records nothing: the message comes again and is applied once', async () => {
    const sw = await setup(1);
    await produceEachTwice(sw);
    const store = memoryStore();
    const totals: Record<string, number> = {};
    let failures = 0;
    const summary = await runUntil(
      sw.consumer({ topics: ['transfers'], from: 'earliest', maxWaitMs: 50 }),
      2,
      {
        idempotency: store,
        handler: async (message, { idempotencyKey }) => {
          if (idempotencyKey === 'transfers/id/transfer-7' && failures === 0) {
            failures++;
            expect(await store.seen(idempotencyKey)).toBe(false);
            throw new Error('downstream unavailable');
          }
          const { account, amount } = transferOf(message);
          totals[account] = (totals[account] ?? 0) + amount;
        },
      },
    );
    expect(totals).toEqual(expectedTotals());
    // The failed first copy rewinds the partition: what was read after it comes again, and is skipped.
    expect(summary).toMatchObject({ handled: messagesCount, failed: 1 });
    expect(summary.skipped).toBeGreaterThanOrEqual(messagesCount);
    expect(await store.seen('transfers/id/transfer-7')).toBe(true);
  });

  test.each(consumerKinds.filter(([kind]) => kind !== 'group'))(
    'worker pool, %s consumer: a failing first run of a key (its duplicate in the same batch waits for it) comes again and is applied once',
    async (_kind, makeConsumer) => {
      const sw = await setup(1);
      await produceEachTwice(sw);
      const directory = temporaryDirectory();
      const log = join(directory, 'applied.jsonl');
      const failedOnce = join(directory, 'failed-once');
      writeFileSync(log, '');
      const module = join(directory, 'handler.mjs');
      writeFileSync(
        module,
        `import { appendFileSync, existsSync, writeFileSync } from 'node:fs';
export function handler(message) {
  const transfer = JSON.parse(message.value.toString());
  if (transfer.amount === 8 && !existsSync(${JSON.stringify(failedOnce)})) {
    writeFileSync(${JSON.stringify(failedOnce)}, '');
    throw new Error('downstream unavailable');
  }
  appendFileSync(${JSON.stringify(log)}, message.value.toString() + '\\n');
}
`,
      );
      const store = memoryStore();
      const summary = await runUntil(makeConsumer(sw), 2, {
        worker: pathToFileURL(module),
        threads: 2,
        batchMessages: 32,
        idempotency: store,
      });
      const totals: Record<string, number> = {};
      for (const line of readFileSync(log, 'utf8')
        .split('\n')
        .filter((text) => text.length > 0)) {
        const { account, amount } = JSON.parse(line) as { account: string; amount: number };
        totals[account] = (totals[account] ?? 0) + amount;
      }
      expect(totals).toEqual(expectedTotals());
      expect(summary.handled).toBe(messagesCount);
      expect(summary.failed).toBe(1);
      expect(await store.seen('transfers/id/transfer-7')).toBe(true);
    },
  );

  test('a store that fails: the message is nacked (IDEMPOTENCY_STORE), comes again, and is applied once', async () => {
    const sw = await setup(1);
    await produceEachTwice(sw);
    const inner = memoryStore();
    let seenFailures = 3;
    let recordFailures = 2;
    const flaky: IdempotencyStore = {
      kind: 'flaky',
      seen: (id) => (seenFailures-- > 0 ? Promise.reject(new Error('connection reset')) : inner.seen(id)),
      record: (id) => (recordFailures-- > 0 ? Promise.reject(new Error('timeout')) : inner.record(id)),
    };
    const totals: Record<string, number> = {};
    const handledIds = new Set<string>();
    let applied = 0;
    const consumer = sw.consumer({ topics: ['transfers'], from: 'earliest', maxWaitMs: 50 });
    const summary = await runUntil(
      consumer,
      2,
      {
        idempotency: flaky,
        handler: (message, { idempotencyKey }) => {
          handledIds.add(idempotencyKey!);
          applied++;
          const { account, amount } = transferOf(message);
          totals[account] = (totals[account] ?? 0) + amount;
        },
      },
      () => handledIds.size === messagesCount,
    );
    // A record failing after the handler ran means one more run: at-least-once, as documented.
    expect(applied).toBe(messagesCount + 2);
    expect(summary.failed).toBe(5);
    expect(summary.handled).toBe(messagesCount);
    const wrong = Object.entries(totals).filter(([account, total]) => total !== expectedTotals()[account]);
    expect(wrong.length).toBeLessThanOrEqual(2);
  });

  test('bad options are INVALID_ARGUMENT; a store that cannot open fails the run with its error', async () => {
    const sw = await setup(1);
    const consumer = sw.consumer({ topics: ['transfers'], from: 'earliest' });
    const rejection = (options: RunOptions) =>
      consumer.run(options).then(
        () => null,
        (error: unknown) => error as SpillwayError,
      );
    expect((await rejection({ handler: () => {}, idempotency: {} as IdempotencyStore }))?.code).toBe(
      'INVALID_ARGUMENT',
    );
    expect((await rejection({ handler: () => {}, idempotencyKey: () => 'x' }))?.code).toBe(
      'INVALID_ARGUMENT',
    );
    expect(
      (await rejection({ handler: () => {}, idempotency: memoryStore(), idempotencyKey: 'x' as never }))
        ?.code,
    ).toBe('INVALID_ARGUMENT');
    const broken = sqliteStore(join(temporaryDirectory(), 'no-such-directory', 'ids.db'));
    const error = await rejection({ handler: () => {}, idempotency: broken });
    expect(error).toBeInstanceOf(SpillwayError);
    expect(error?.code).toBe('IDEMPOTENCY_STORE');
  });

  test('a key function returning a bad key fails that message (INVALID_ARGUMENT text), which comes again', async () => {
    const sw = await setup(1);
    await produceEachTwice(sw);
    let bad = 1;
    const consumer = sw.consumer({ topics: ['transfers'], from: 'earliest', maxWaitMs: 50 });
    const totals: Record<string, number> = {};
    const summary = await runUntil(consumer, 2, {
      idempotency: memoryStore(),
      idempotencyKey: (message) => (bad-- > 0 ? '' : defaultIdempotencyKey(message)),
      handler: (message) => {
        const { account, amount } = transferOf(message);
        totals[account] = (totals[account] ?? 0) + amount;
      },
    });
    expect(totals).toEqual(expectedTotals());
    expect(summary).toMatchObject({ failed: 1, handled: messagesCount });
  });
});
