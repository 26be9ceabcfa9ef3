/**
 * `spillway topic create|list|describe|add-partitions|delete` against a broker child process: the
 * JSON they print, their exit codes, expected errors (exit 1, one line) and bad usage (exit 2).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BrokerProcess, ensureBuilt, killBrokers, runCli } from './cli-process.js';

interface Description {
  name: string;
  partitionCount: number;
  config: Record<string, unknown>;
  partitions: Array<{ partition: number; logStartOffset: number; logEndOffset: number }>;
}

let directory: string;
let broker: BrokerProcess;

beforeAll(async () => {
  ensureBuilt();
  directory = mkdtempSync(join(tmpdir(), 'spillway-cli-topic-'));
  broker = await BrokerProcess.start(['--data-dir', join(directory, 'data')]);
});

afterAll(async () => {
  if (broker?.running) await broker.stop();
  killBrokers();
  rmSync(directory, { recursive: true, force: true });
});

function topic(...args: string[]) {
  return runCli(['topic', ...args, '--broker', broker.url]);
}

function expectOneLineError(stderr: string, pattern: RegExp): void {
  expect(stderr).toMatch(pattern);
  expect(stderr.trimEnd().split('\n')).toHaveLength(1);
  expect(stderr).not.toMatch(/\n\s+at /);
}

describe('spillway topic', () => {
  it('create with every option prints the description; describe, list, add-partitions, delete', async () => {
    const created = await topic(
      'create',
      'orders',
      '--partitions',
      '3',
      '--durability',
      'always',
      '--retention-ms',
      '3600000',
      '--retention-bytes',
      '10000000',
      '--segment-bytes',
      '1048576',
      '--dedup-window-ms',
      '0',
    );
    expect(created.code).toBe(0);
    expect(created.stderr).toBe('');
    const description = JSON.parse(created.stdout) as Description;
    expect(description).toMatchObject({
      name: 'orders',
      partitionCount: 3,
      config: {
        partitions: 3,
        durability: 'always',
        retentionMs: 3_600_000,
        retentionBytes: 10_000_000,
        segmentBytes: 1_048_576,
        dedupWindowMs: 0,
      },
    });
    expect(description.partitions.map((p) => [p.partition, p.logStartOffset, p.logEndOffset])).toEqual([
      [0, 0, 0],
      [1, 0, 0],
      [2, 0, 0],
    ]);

    const defaults = await topic('create', 'plain', '--retention-ms', '-1', '--retention-bytes', '-1');
    expect(defaults.code).toBe(0);
    expect(JSON.parse(defaults.stdout)).toMatchObject({
      name: 'plain',
      partitionCount: 1,
      config: { durability: 'interval', flushIntervalMs: 200, retentionMs: -1, retentionBytes: -1 },
    });

    const described = await topic('describe', 'orders');
    expect(described.code).toBe(0);
    expect(JSON.parse(described.stdout)).toEqual(description);

    const listed = await topic('list');
    expect(listed.code).toBe(0);
    expect((JSON.parse(listed.stdout) as Description[]).map((t) => t.name).sort()).toEqual([
      'orders',
      'plain',
    ]);

    const grown = await topic('add-partitions', 'orders', '--count', '2');
    expect(grown.code).toBe(0);
    const grownDescription = JSON.parse(grown.stdout) as Description;
    expect(grownDescription.partitionCount).toBe(5);
    expect(grownDescription.partitions.map((p) => p.partition)).toEqual([0, 1, 2, 3, 4]);

    const deleted = await topic('delete', 'orders');
    expect(deleted.code).toBe(0);
    expect(JSON.parse(deleted.stdout)).toEqual({ deleted: 'orders' });
    const gone = await topic('describe', 'orders');
    expect(gone.code).toBe(1);
    expectOneLineError(gone.stderr, /^spillway topic: UNKNOWN_TOPIC: .*orders/);
    expect(gone.stdout).toBe('');
    const listedAfter = await topic('list');
    expect((JSON.parse(listedAfter.stdout) as Description[]).map((t) => t.name)).toEqual(['plain']);
  });

  it('list --internal also shows internal topics; --internal elsewhere is bad usage', async () => {
    const plain = await topic('list');
    expect(plain.code).toBe(0);
    expect((JSON.parse(plain.stdout) as Array<{ name: string }>).map((t) => t.name)).not.toContain(
      '__metadata',
    );
    const all = await topic('list', '--internal');
    expect(all.code).toBe(0);
    expect((JSON.parse(all.stdout) as Array<{ name: string }>).map((t) => t.name)).toContain('__metadata');
    const described = await topic('describe', '__metadata');
    expect(JSON.parse(described.stdout)).toMatchObject({ name: '__metadata', partitionCount: 1 });
    const misplaced = await topic('describe', '__metadata', '--internal');
    expect(misplaced.code).toBe(2);
    const reserved = await topic('create', '__mine');
    expect(reserved.code).toBe(1);
    expectOneLineError(reserved.stderr, /INVALID_TOPIC_NAME.*reserved for internal topics/);
  });

  it('create of an existing topic: TOPIC_EXISTS, exit 1, one line', async () => {
    expect((await topic('create', 'plain-twice')).code).toBe(0);
    const result = await topic('create', 'plain-twice');
    expect(result.code).toBe(1);
    expectOneLineError(result.stderr, /TOPIC_EXISTS/);
  });

  it.each([
    [['delete', 'never-made'], /UNKNOWN_TOPIC: .*never-made/],
    [['add-partitions', 'never-made', '--count', '1'], /UNKNOWN_TOPIC/],
    [['create', 'bad/name'], /INVALID_TOPIC_NAME/],
    [['create', 'huge', '--partitions', '100000000'], /INVALID_ARGUMENT/],
    [
      ['create', 'deduped', '--dedup-window-ms', '604800001'],
      /^spillway topic: INVALID_ARGUMENT: topic config dedupWindowMs must be an integer in \[0, 604800000\] \(0: disabled\), got 604800001$/m,
    ],
  ])('expected errors exit 1 with one line: %j', async (args, pattern) => {
    const result = await topic(...args);
    expect(result.code).toBe(1);
    expectOneLineError(result.stderr, pattern);
  });

  it.each([
    [[], /topic needs an action/],
    [['rename', 'x'], /unknown topic action 'rename'/],
    [['create'], /topic create needs a topic NAME/],
    [['list', 'extra'], /topic list takes no NAME/],
    [['create', 'a', 'b'], /unexpected argument 'b'/],
    [['create', 'x', '--durability', 'sometimes'], /--durability must be one of none, interval, always/],
    [['create', 'x', '--partitions', '0'], /--partitions must be an integer >= 1/],
    [['create', 'x', '--retention-ms', '-2'], /--retention-ms must be an integer >= -1/],
    [['create', 'x', '--partitions', '-1'], /--partitions' argument is ambiguous/],
    [['create', 'x', '--colour', 'red'], /Unknown option '--colour'/],
    [['add-partitions', 'x'], /add-partitions needs --count N/],
  ])('bad usage %j: exit 2 with the usage, nothing sent', async (args, pattern) => {
    const result = await topic(...args);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(pattern);
    expect(result.stderr).toContain('usage: spillway topic create NAME');
    expect(result.stdout).toBe('');
  });

  it('a --broker that is not a ws:// URL is bad usage (exit 2)', async () => {
    // http(s):// names the same port (docs/SECURITY.md); other schemes are mistakes.
    for (const url of ['ftp://127.0.0.1:1', 'nonsense']) {
      const result = await runCli(['topic', 'list', '--broker', url]);
      expect(result.code).toBe(2);
      expect(result.stderr).toMatch(/--broker must be a ws:\/\/ (or wss:\/\/ )?URL/);
    }
  });

  it('nothing was created by the refused commands', async () => {
    const listed = await topic('list');
    const names = (JSON.parse(listed.stdout) as Description[]).map((t) => t.name);
    expect(names).not.toContain('x');
    expect(names).not.toContain('a');
    expect(names).not.toContain('deduped');
  });

  it('--help prints the usage, exit 0', async () => {
    const result = await runCli(['topic', '--help']);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('spillway topic add-partitions NAME --count N');
  });
});
