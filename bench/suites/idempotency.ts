/**
 * What consumer.run's idempotency stores cost: a no-op handler over the log consumer without a
 * store, and with memoryStore, redisStore (a private redis-server, when installed) and sqliteStore
 * (a file in the scratch directory: as sqliteStore opens it, WAL + synchronous=FULL, one fsync per
 * message; the same with the id written in the handler's transaction; and a database passed in with
 * synchronous=NORMAL, no fsync per commit). Every message is new: each case pays seen + record.
 *
 * Setup: a broker in this process (durability none), a topic of 4 partitions holding N messages of
 * 100 B, produced once. Each case starts a consumer from 'earliest' and times from run() until
 * the case's count of messages was handled (counted in the handler), then closes the consumer.
 * Counts differ per case (what the store allows in a few seconds): the rate is what compares.
 * Fresh store (table, prefix) per run. Median of 3 runs (1 quick), the runs of the cases alternated.
 */
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { createClient } from 'redis';
import type { RunOptions } from '../../src/client/consumer-run.js';
import {
  memoryStore,
  redisStore,
  Spillway,
  type SqliteHandlingContext,
  type SqliteStore,
  sqliteStore,
} from '../../src/client/index.js';
import { Broker } from '../../src/spillway-broker.js';
import { findExecutable } from '../peers/install.js';
import { canConnect, freePort, ServerProcess } from '../peers/server-process.js';
import { freshDirectory } from '../peers/workload.js';
import { type BenchContext, type BenchRow, type BenchSuite, median } from '../report.js';

const suiteName = 'idempotency';
const topic = 'idempotency-bench';

async function produce(sw: Spillway, count: number): Promise<void> {
  const producer = sw.producer({ lingerMs: 1, batchBytes: 256 * 1024 });
  const value = new Uint8Array(100).fill(0x61);
  let window: Array<Promise<unknown>> = [];
  for (let index = 0; index < count; index++) {
    window.push(producer.send(topic, { key: `k${index % 1000}`, value }));
    if (window.length === 20_000) {
      await Promise.all(window);
      window = [];
    }
  }
  await Promise.all(window);
  await producer.close();
}

/** Seconds from run() until `count` messages were handled. */
async function timeRun<Extra extends object>(
  sw: Spillway,
  count: number,
  options: RunOptions<Extra>,
): Promise<number> {
  const consumer = sw.consumer({ topics: [topic], from: 'earliest' });
  await consumer.ready();
  let handled = 0;
  let reached: () => void = () => undefined;
  const allHandled = new Promise<void>((resolve) => {
    reached = resolve;
  });
  const handler = options.handler!;
  const started = process.hrtime.bigint();
  const running = consumer.run({
    ...options,
    handler: (message, context) => {
      handler(message, context);
      if (++handled === count) reached();
    },
  });
  let failure: unknown = null;
  running.catch((error: unknown) => {
    failure = error;
    reached();
  });
  await allHandled;
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  await consumer.close();
  await running.catch(() => undefined);
  if (failure !== null) throw failure;
  return seconds;
}

/**
 * Run options whose handler writes through the store's transaction: typed by the store, handed to
 * timeRun as plain options (the context it gets at run time is the store's).
 */
function transactional(store: SqliteStore, write: () => void): RunOptions<object> {
  const options: RunOptions<SqliteHandlingContext> = {
    idempotency: store,
    handler: (_message, context) => {
      context.transaction(write);
    },
  };
  return options as unknown as RunOptions<object>;
}

interface Case {
  name: string;
  count: number;
  /** Fresh options (a fresh store) per run, and what to close after it. */
  make(run: number): Promise<{ options: RunOptions<object>; close(): Promise<void> }>;
}

async function run(context: BenchContext): Promise<BenchRow[]> {
  const scale = context.quick ? 0.1 : 1;
  const runs = context.quick ? 1 : 3;
  const fast = Math.round(200_000 * scale);
  const medium = Math.round(20_000 * scale);
  const slow = Math.round(1_000 * scale);
  const scratch = path.resolve(context.scratchDir, 'idempotency');
  freshDirectory(scratch);
  const broker = await Broker.open({ dataDir: path.join(scratch, 'broker'), durability: 'none' });
  const redisExecutable = findExecutable('redis-server');
  let redis: ServerProcess | null = null;
  const rows: BenchRow[] = [];
  try {
    const sw = await Spillway.connect(broker);
    await sw.admin.createTopic(topic, { partitions: 4 });
    context.log(`idempotency: producing ${fast} messages of 100 B`);
    await produce(sw, fast);
    const noop = (): void => undefined;
    const sqliteFile = (run: number, name: string): string => path.join(scratch, `${name}-${run}.db`);
    const cases: Case[] = [
      {
        name: 'no store',
        count: fast,
        make: async () => ({ options: { handler: noop }, close: async () => {} }),
      },
      {
        name: 'memoryStore',
        count: fast,
        make: async () => ({
          options: { handler: noop, idempotency: memoryStore({ max: fast }) },
          close: async () => {},
        }),
      },
      {
        name: 'sqliteStore (path: WAL, synchronous=FULL), record after the handler',
        count: slow,
        make: async (run) => {
          const store = sqliteStore(sqliteFile(run, 'full'));
          return { options: { handler: noop, idempotency: store }, close: () => store.close() };
        },
      },
      {
        name: 'sqliteStore (path: WAL, synchronous=FULL), id in the handler transaction',
        count: slow,
        make: async (run) => {
          const store = sqliteStore(sqliteFile(run, 'txn'));
          return {
            options: transactional(store, () => undefined),
            close: () => store.close(),
          };
        },
      },
      {
        name: 'sqliteStore (database passed in: WAL, synchronous=NORMAL), record after the handler',
        count: medium,
        make: async (run) => {
          const db = new Database(sqliteFile(run, 'normal'));
          db.pragma('journal_mode = WAL');
          db.pragma('synchronous = NORMAL');
          return {
            options: { handler: noop, idempotency: sqliteStore(db) },
            close: async () => {
              db.close();
            },
          };
        },
      },
    ];
    if (redisExecutable !== undefined) {
      const port = await freePort();
      const directory = path.join(scratch, 'redis');
      freshDirectory(directory);
      // biome-ignore format: one option per line
      const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', directory, '--save', '', '--appendonly', 'no', '--logfile', ''];
      redis = await ServerProcess.start({
        name: 'redis-server',
        command: redisExecutable,
        args,
        cwd: directory,
        logFile: path.join(scratch, 'redis.log'),
        ready: () => canConnect(port),
        startTimeoutMs: 10_000,
        stopTimeoutMs: 10_000,
      });
      for (const concurrency of [1, 64]) {
        cases.push({
          name: `redisStore (no persistence), concurrency ${concurrency}`,
          count: medium,
          make: async (run) => {
            const client = createClient({ socket: { host: '127.0.0.1', port } });
            client.on('error', () => {});
            await client.connect();
            return {
              options: {
                handler: noop,
                concurrency,
                ordering: 'key',
                idempotency: redisStore(client, { prefix: `bench${concurrency}-${run}:` }),
              },
              close: async () => {
                client.destroy();
              },
            };
          },
        });
      }
    } else {
      context.log('idempotency: redis-server not installed: redisStore cases skipped');
    }
    // Runs alternate between the cases (case 1 run 1, case 2 run 1, ..., case 1 run 2, ...): load
    // changes on a shared machine hit every case alike.
    const samples = new Map<string, number[]>(cases.map((entry) => [entry.name, []]));
    for (let index = 0; index < runs; index++) {
      for (const { name, count, make } of cases) {
        const { options, close } = await make(index);
        try {
          samples.get(name)!.push(count / (await timeRun(sw, count, options)));
        } finally {
          await close();
        }
      }
    }
    const rates = new Map<string, number>();
    for (const { name, count } of cases) {
      const caseSamples = samples.get(name)!;
      const rate = median(caseSamples);
      rates.set(name, rate);
      context.log(`idempotency: ${name}: ${Math.round(rate)} msg/s`);
      rows.push({
        suite: suiteName,
        name: `run({handler}) no-op, ${name}`,
        value: Math.round(rate),
        unit: 'msg/s',
        detail: `${count} msgs of 100 B, 4 partitions, in-process broker, log consumer; median of ${runs} (${caseSamples.map((sample) => Math.round(sample)).join(', ')})`,
      });
    }
    rows.push({
      suite: suiteName,
      name: 'memoryStore / no store',
      value: Math.round((rates.get('memoryStore')! / rates.get('no store')!) * 1000) / 1000,
      unit: 'x',
      detail: 'throughput ratio, no-op handler, same run: below 1 is the cost of seen + record + claim',
    });
    await sw.close();
  } finally {
    await broker.close();
    await redis?.stop();
  }
  return rows;
}

export const suite: BenchSuite = { name: suiteName, run };
