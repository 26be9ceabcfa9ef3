/**
 * `spillway broker` as a child process: the listening line, graceful SIGTERM (exit 0, data kept),
 * the config file, bad usage and bad config files (exit 2), a busy port (exit 1), --help.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Spillway } from '../../src/client/index.js';
import { BrokerProcess, ensureBuilt, freePort, jsonLines, killBrokers, runCli } from './cli-process.js';

let directory: string;

beforeAll(() => {
  ensureBuilt();
  directory = mkdtempSync(join(tmpdir(), 'spillway-cli-broker-'));
});

afterAll(() => {
  killBrokers();
  rmSync(directory, { recursive: true, force: true });
});

/** Output of an expected error: one line, no stack trace. */
function expectOneLineError(stderr: string, pattern: RegExp): void {
  expect(stderr).toMatch(pattern);
  expect(stderr.trimEnd().split('\n')).toHaveLength(1);
  expect(stderr).not.toMatch(/\n\s+at /);
}

/** Output of bad usage: the message, then the usage text; no stack trace. */
function expectUsage(stderr: string, pattern: RegExp): void {
  expect(stderr).toMatch(pattern);
  expect(stderr).toContain('usage: spillway');
  expect(stderr).not.toMatch(/\n\s+at /);
}

describe('spillway broker', () => {
  it('prints the listening line, stops on SIGTERM with exit 0, and keeps the data for the next start', async () => {
    const dataDir = join(directory, 'sigterm');
    let broker = await BrokerProcess.start(['--data-dir', dataDir]);
    const url = broker.url;
    expect(url).toMatch(/^ws:\/\/127\.0\.0\.1:\d+$/);
    const created = await runCli(['topic', 'create', 'kept', '--partitions', '2', '--broker', url]);
    expect(created.code).toBe(0);
    const produced = await runCli(['produce', 'kept', '--broker', url], { input: 'a\nb\nc\n' });
    expect(produced.code).toBe(0);
    const acks = jsonLines<{ partition: number; offset: number }>(produced.stdout);
    expect(acks).toHaveLength(3);

    const exit = await broker.stop('SIGTERM');
    expect(exit).toEqual({ code: 0, signal: null });
    expect(broker.stderr).toContain('spillway: shutting down');

    broker = await BrokerProcess.start(['--data-dir', dataDir], { port: broker.port });
    const consumed = await runCli([
      'consume',
      'kept',
      '--from',
      'earliest',
      '--max-messages',
      '3',
      '--broker',
      broker.url,
    ]);
    expect(consumed.code).toBe(0);
    const messages = jsonLines<{ partition: number; offset: number; value: string }>(consumed.stdout);
    const byPosition = new Map(messages.map((m) => [`${m.partition}/${m.offset}`, m.value]));
    expect(acks.map((ack) => byPosition.get(`${ack.partition}/${ack.offset}`))).toEqual(['a', 'b', 'c']);
    expect((await broker.stop('SIGINT')).code).toBe(0);
  });

  it('SIGTERM with a consumer long-polling: exits 0 at once (no timer of the shutdown left behind)', async () => {
    const broker = await BrokerProcess.start(['--data-dir', join(directory, 'long-poll')]);
    const sw = await Spillway.connect(broker.url, { reconnectBackoffMs: 50 });
    try {
      await sw.admin.createTopic('quiet', { partitions: 2 });
      const consumer = sw.consumer({ topics: ['quiet'], from: 'latest', maxWaitMs: 5000 });
      await consumer.ready();
      const iterating = (async () => {
        for await (const _message of consumer) break;
      })().catch(() => undefined);
      await new Promise((resolve) => setTimeout(resolve, 300)); // its fetches wait in the broker
      const started = performance.now();
      expect(await broker.stop('SIGTERM')).toEqual({ code: 0, signal: null });
      // Before the fix, a pending 10 s deadline timer of server.close() kept the process alive.
      expect(performance.now() - started).toBeLessThan(3000);
      await consumer.close();
      await iterating;
    } finally {
      await sw.close();
    }
  });

  it('honours --config (port, data directory, default durability, flush interval)', async () => {
    const port = await freePort();
    const dataDir = join(directory, 'from-config');
    const config = join(directory, 'config.json');
    writeFileSync(config, JSON.stringify({ port, dataDir, durability: 'always', flushIntervalMs: 50 }));
    const broker = await BrokerProcess.start(['--config', config], { port, portInArgs: true });
    try {
      const created = await runCli(['topic', 'create', 'configured', '--broker', broker.url]);
      expect(created.code).toBe(0);
      const description = JSON.parse(created.stdout) as {
        config: { durability: string; flushIntervalMs: number };
      };
      expect(description.config.durability).toBe('always');
      expect(description.config.flushIntervalMs).toBe(50);
    } finally {
      expect((await broker.stop()).code).toBe(0);
    }
    // The data went to the directory of the file.
    const again = await BrokerProcess.start(['--data-dir', dataDir], { port });
    try {
      const listed = await runCli(['topic', 'list', '--broker', again.url]);
      expect((JSON.parse(listed.stdout) as Array<{ name: string }>).map((topic) => topic.name)).toEqual([
        'configured',
      ]);
    } finally {
      await again.stop();
    }
  });

  it('syncs lightly loaded always logs on the event loop unless --no-inline-fdatasync or inlineFdatasync: false', async () => {
    /** Lone always appends, one at a time; then the process's inline fdatasync count from /metrics. */
    const inlineCalls = async (args: string[], port: number): Promise<number> => {
      const broker = await BrokerProcess.start(args, { port });
      try {
        const client = await Spillway.connect(broker.url);
        try {
          await client.admin.createTopic('lone', { partitions: 1, durability: 'always' });
          const producer = client.producer({ lingerMs: 0 });
          for (let i = 0; i < 5; i++) await producer.send('lone', { value: new Uint8Array([i]) });
        } finally {
          await client.close();
        }
        const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
        const line = metrics
          .split('\n')
          .find((row) => row.startsWith('spillway_inline_fdatasync_total{result="all"}'));
        expect(line, metrics.slice(0, 200)).toBeDefined();
        return Number(line!.split(' ')[1]);
      } finally {
        expect((await broker.stop()).code).toBe(0);
      }
    };
    expect(await inlineCalls(['--data-dir', join(directory, 'inline-on')], await freePort())).toBeGreaterThan(
      0,
    );
    expect(
      await inlineCalls(
        ['--data-dir', join(directory, 'inline-off'), '--no-inline-fdatasync'],
        await freePort(),
      ),
    ).toBe(0);
    const config = join(directory, 'inline-off.json');
    writeFileSync(config, JSON.stringify({ inlineFdatasync: false }));
    expect(
      await inlineCalls(
        ['--config', config, '--data-dir', join(directory, 'inline-off-config')],
        await freePort(),
      ),
    ).toBe(0);
  });

  it('lets flags override the config file', async () => {
    const port = await freePort();
    const config = join(directory, 'override.json');
    writeFileSync(config, JSON.stringify({ port: 1, dataDir: join(directory, 'override') }));
    const broker = await BrokerProcess.start(['--config', config, '--durability', 'none'], { port });
    try {
      const created = await runCli(['topic', 'create', 'o', '--broker', broker.url]);
      expect((JSON.parse(created.stdout) as { config: { durability: string } }).config.durability).toBe(
        'none',
      );
    } finally {
      await broker.stop();
    }
  });

  it.each([
    ['not JSON', '{"port":', /not valid JSON/],
    ['not an object', '[1, 2]', /must hold a JSON object/],
    ['an unknown key', '{"prot": 7070}', /unknown key 'prot'/],
    ['a port that is not a number', '{"port": "abc"}', /'port' must be an integer/],
    ['a port out of range', '{"port": 70000}', /'port' must be an integer in \[0, 65535\]/],
    ['a bad durability', '{"durability": "sometimes"}', /'durability' must be one of none, interval, always/],
    ['a negative flush interval', '{"flushIntervalMs": -5}', /'flushIntervalMs' must be an integer/],
    ['an empty data directory', '{"dataDir": ""}', /'dataDir' must be a non-empty string/],
    ['inlineFdatasync not a boolean', '{"inlineFdatasync": "no"}', /'inlineFdatasync' must be true or false/],
    [
      'delayTransactionsKeptMax of 0',
      '{"delayTransactionsKeptMax": 0}',
      /'delayTransactionsKeptMax' must be a positive integer/,
    ],
  ])('refuses a config file with %s: exit 2 and the usage', async (_what, text, pattern) => {
    const config = join(directory, `bad-${Math.random().toString(36).slice(2)}.json`);
    writeFileSync(config, text);
    const result = await runCli(['broker', '--config', config, '--data-dir', join(directory, 'never')]);
    expect(result.code).toBe(2);
    expectUsage(result.stderr, pattern);
    expect(result.stdout).toBe('');
  });

  it('refuses a config file that cannot be read: exit 2', async () => {
    const result = await runCli(['broker', '--config', join(directory, 'missing.json')]);
    expect(result.code).toBe(2);
    expectUsage(result.stderr, /cannot read config file .*missing\.json/);
  });

  it.each([
    [['--bogus'], /Unknown option '--bogus'/],
    [['--durability', 'sometimes'], /--durability must be one of none, interval, always/],
    [['--port', 'seventy'], /--port must be an integer/],
    [['--port', '70000'], /--port must be at most 65535/],
    [['--flush-interval-ms', '0'], /--flush-interval-ms must be an integer >= 1/],
    [['--flush-interval-ms', '99999999'], /--flush-interval-ms must be at most 3600000/],
    [['positional'], /Unexpected argument 'positional'/],
  ])('bad usage %j: exit 2 and the usage', async (args, pattern) => {
    const result = await runCli(['broker', '--data-dir', join(directory, 'never'), ...args]);
    expect(result.code).toBe(2);
    expectUsage(result.stderr, pattern);
  });

  it('fails with exit 1 and one line when the port is taken', async () => {
    const broker = await BrokerProcess.start(['--data-dir', join(directory, 'first')]);
    try {
      const second = await runCli([
        'broker',
        '--port',
        String(broker.port),
        '--data-dir',
        join(directory, 'second'),
      ]);
      expect(second.code).toBe(1);
      expectOneLineError(second.stderr, /cannot listen on 127\.0\.0\.1:\d+/);
    } finally {
      await broker.stop();
    }
  });

  it('--help prints the usage with exit 0; no command prints it with exit 2; an unknown command exits 2', async () => {
    const help = await runCli(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/usage: spillway <command>/);
    const brokerHelp = await runCli(['broker', '--help']);
    expect(brokerHelp.code).toBe(0);
    expect(brokerHelp.stdout).toMatch(/usage: spillway broker \[--data-dir DIR\] \[--host H\] \[--port P\]/);
    expect(brokerHelp.stdout).toContain('--config FILE');
    const nothing = await runCli([]);
    expect(nothing.code).toBe(2);
    const unknown = await runCli(['frobnicate']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/unknown command 'frobnicate'/);
  });
});
