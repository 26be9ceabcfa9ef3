/**
 * `spillway produce` and `spillway consume` against a broker child process: 100k stdin lines with
 * their acknowledgements in input order (checked against what is consumed), --value, --key,
 * --partition, the consume JSON fields, --max-messages, --idle-exit-ms, --from latest; expected
 * errors (exit 1, one line), bad usage (exit 2), an unreachable broker, a reader that goes away.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Spillway, SpillwayError } from '../../src/client/index.js';
import { partitionForKey } from '../../src/protocol/partitioner.js';
import {
  BrokerProcess,
  cliPath,
  ensureBuilt,
  freePort,
  jsonLines,
  killBrokers,
  runCli,
} from './cli-process.js';

interface Ack {
  partition: number;
  offset: number;
}

interface Printed {
  topic: string;
  partition: number;
  offset: number;
  key: string | null;
  value: string | null;
  headers: Record<string, string | null>;
  timestamp: number;
  deliveryCount: number;
}

let directory: string;
let broker: BrokerProcess;

beforeAll(async () => {
  ensureBuilt();
  directory = mkdtempSync(join(tmpdir(), 'spillway-cli-produce-'));
  broker = await BrokerProcess.start(['--data-dir', join(directory, 'data'), '--durability', 'none']);
});

afterAll(async () => {
  if (broker?.running) await broker.stop();
  killBrokers();
  rmSync(directory, { recursive: true, force: true });
});

function cli(args: string[], input?: string) {
  return runCli([...args, '--broker', broker.url], { input, timeoutMs: 30_000 });
}

function expectOneLineError(stderr: string, pattern: RegExp): void {
  expect(stderr).toMatch(pattern);
  expect(stderr.trimEnd().split('\n')).toHaveLength(1);
  expect(stderr).not.toMatch(/\n\s+at /);
}

async function createTopic(name: string, partitions: number): Promise<void> {
  const result = await cli(['topic', 'create', name, '--partitions', String(partitions)]);
  expect(result.code).toBe(0);
}

describe('spillway produce / consume', () => {
  it('100k stdin lines: 100k acknowledgements in input order, each where its line was stored', async () => {
    const count = 100_000;
    await createTopic('lines', 4);
    const input = `${Array.from({ length: count }, (_, i) => `line-${i}`).join('\n')}\n`;
    const produced = await cli(['produce', 'lines'], input);
    expect(produced.stderr).toBe('');
    expect(produced.code).toBe(0);
    const outputLines = produced.stdout.split('\n');
    expect(outputLines.pop()).toBe('');
    expect(outputLines).toHaveLength(count);
    for (const line of outputLines) expect(line).toMatch(/^\{"partition":\d+,"offset":\d+\}$/);
    const acks = outputLines.map((line) => JSON.parse(line) as Ack);

    // Offsets of one partition grow along the input (input order), and no position repeats.
    const lastOffset = new Map<number, number>();
    for (const ack of acks) {
      expect(ack.offset).toBeGreaterThan(lastOffset.get(ack.partition) ?? -1);
      lastOffset.set(ack.partition, ack.offset);
    }

    const consumed = await cli(['consume', 'lines', '--from', 'earliest', '--max-messages', String(count)]);
    expect(consumed.code).toBe(0);
    const messages = jsonLines<Printed>(consumed.stdout);
    expect(messages).toHaveLength(count);
    const valueAt = new Map(messages.map((m) => [`${m.partition}/${m.offset}`, m.value]));
    expect(valueAt.size).toBe(count);
    for (let i = 0; i < count; i++) {
      const value = valueAt.get(`${acks[i]!.partition}/${acks[i]!.offset}`);
      if (value !== `line-${i}`)
        throw new Error(`line ${i} acknowledged at ${JSON.stringify(acks[i])} holds ${value}`);
    }
  });

  it('--value sends one message; --key keeps one partition; --partition picks it', async () => {
    await createTopic('single', 8);
    const one = await cli(['produce', 'single', '--value', 'only one']);
    expect(one.code).toBe(0);
    expect(jsonLines<Ack>(one.stdout)).toHaveLength(1);

    const keyed = await cli(['produce', 'single', '--key', 'user-7'], 'k1\nk2\nk3\nk4\nk5\n');
    expect(keyed.code).toBe(0);
    const keyedAcks = jsonLines<Ack>(keyed.stdout);
    expect(keyedAcks).toHaveLength(5);
    const keyPartition = partitionForKey('user-7', 8);
    expect(new Set(keyedAcks.map((ack) => ack.partition))).toEqual(new Set([keyPartition]));
    expect(keyedAcks.map((ack) => ack.offset - keyedAcks[0]!.offset)).toEqual([0, 1, 2, 3, 4]);

    const pinned = await cli(['produce', 'single', '--partition', '5', '--key', 'user-7'], 'p1\np2\n');
    expect(pinned.code).toBe(0);
    expect(jsonLines<Ack>(pinned.stdout).map((ack) => ack.partition)).toEqual([5, 5]);

    const consumed = await cli(['consume', 'single', '--from', 'earliest', '--max-messages', '8']);
    expect(consumed.code).toBe(0);
    const messages = jsonLines<Printed>(consumed.stdout);
    expect(messages).toHaveLength(8);
    const keyedMessages = messages.filter((m) => m.partition === keyPartition && m.key === 'user-7');
    expect(keyedMessages.map((m) => m.value)).toEqual(['k1', 'k2', 'k3', 'k4', 'k5']);
    // The keyless message went to a random partition, possibly 5: only the pinned keyed ones count.
    const pinnedMessages = messages.filter((m) => m.partition === 5 && m.key === 'user-7');
    expect(pinnedMessages.map((m) => [m.key, m.value])).toEqual([
      ['user-7', 'p1'],
      ['user-7', 'p2'],
    ]);
    expect(messages.filter((m) => m.value === 'only one')).toHaveLength(1);
  });

  it('--delay-ms and --deliver-at: acknowledged as delayed, in the topic at their due time, not before', async () => {
    await createTopic('later', 1);
    const dueAfter = Date.now() + 1500;
    const delayed = await cli(['produce', 'later', '--delay-ms', '1500'], 'd1\nd2\n');
    expect(delayed.code).toBe(0);
    expect(jsonLines(delayed.stdout).map((ack) => ack['delayed'])).toEqual([true, true]);
    const at = new Date(Date.now() + 1500).toISOString();
    const iso = await cli(['produce', 'later', '--deliver-at', at, '--value', 'd3']);
    expect(iso.code).toBe(0);
    const sw = await Spillway.connect(broker.url);
    try {
      const logEnd = (await sw.admin.describeTopic('later')).partitions[0]!.logEndOffset;
      // Nothing in the topic before the due time (each CLI run starts a Node process: on a loaded
      // machine the due time may already have passed here; the timestamps below check it anyway).
      if (Date.now() < dueAfter) expect(logEnd).toBe(0);
      const consumed = await cli(['consume', 'later', '--max-messages', '3', '--idle-exit-ms', '10000']);
      const messages = jsonLines<Printed>(consumed.stdout);
      expect(messages.map((m) => m.value)).toEqual(['d1', 'd2', 'd3']);
      for (const message of messages) {
        const due = Number(message.headers['sw-original-deliver-at']);
        expect(due).toBeGreaterThanOrEqual(dueAfter);
        expect(message.timestamp).toBeGreaterThanOrEqual(due);
      }
      const stats = await cli(['delay', 'stats']);
      expect(JSON.parse(stats.stdout)).toMatchObject({ pending: 0, nextDueMs: null });
    } finally {
      await sw.close();
    }
  });

  it('consume prints the fields of API.md, one JSON line each, and stops at --max-messages', async () => {
    await createTopic('fields', 1);
    const before = Date.now();
    expect((await cli(['produce', 'fields', '--key', 'k'], 'héllo\n\nthird\n')).code).toBe(0);
    const consumed = await cli(['consume', 'fields', '--from', 'earliest', '--max-messages', '2']);
    expect(consumed.code).toBe(0);
    expect(consumed.stderr).toBe('');
    const lines = consumed.stdout.trimEnd().split('\n');
    expect(lines).toHaveLength(2);
    const first = JSON.parse(lines[0]!) as Printed;
    expect(Object.keys(first)).toEqual([
      'topic',
      'partition',
      'offset',
      'key',
      'value',
      'headers',
      'timestamp',
      'deliveryCount',
    ]);
    expect(first).toMatchObject({
      topic: 'fields',
      partition: 0,
      offset: 0,
      key: 'k',
      value: 'héllo',
      headers: {},
      deliveryCount: 1,
    });
    expect(first.timestamp).toBeGreaterThanOrEqual(before - 1000);
    expect(first.timestamp).toBeLessThanOrEqual(Date.now());
    expect(JSON.parse(lines[1]!)).toMatchObject({ offset: 1, value: '' }); // an empty line is an empty value
  });

  it('--idle-exit-ms ends a consume that has read everything; --from latest skips what was there', async () => {
    await createTopic('idle', 2);
    expect((await cli(['produce', 'idle'], 'a\nb\nc\n')).code).toBe(0);
    const started = performance.now();
    const all = await cli(['consume', 'idle', '--from', 'earliest', '--idle-exit-ms', '400']);
    expect(all.code).toBe(0);
    expect(
      jsonLines<Printed>(all.stdout)
        .map((m) => m.value)
        .sort(),
    ).toEqual(['a', 'b', 'c']);
    expect(performance.now() - started).toBeLessThan(10_000);

    const latest = await cli(['consume', 'idle', '--from', 'latest', '--idle-exit-ms', '300']);
    expect(latest.code).toBe(0);
    expect(latest.stdout).toBe('');
  });

  it('a consumer that gets a message while idling prints it and keeps going', async () => {
    await createTopic('live', 1);
    const child = spawn(
      process.execPath,
      [cliPath, 'consume', 'live', '--from', 'latest', '--idle-exit-ms', '1500', '--broker', broker.url],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
    });
    const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
    const timer = setTimeout(() => child.pid !== undefined && process.kill(child.pid, 'SIGKILL'), 20_000);
    const sw = await Spillway.connect(broker.url);
    const producer = sw.producer();
    const produced: string[] = [];
    try {
      // The consumer starts at 'latest' some time after its spawn: produce every 200 ms until it prints.
      for (let attempt = 0; attempt < 50 && stdout.length === 0; attempt++) {
        const value = `fresh-${attempt}`;
        await producer.send('live', { value });
        produced.push(value);
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      expect(await exited).toBe(0); // --idle-exit-ms after the last message
      const printed = jsonLines<Printed>(stdout).map((m) => m.value);
      expect(printed.length).toBeGreaterThan(0);
      // Everything produced since the consumer started, in order, nothing else.
      expect(printed).toEqual(produced.slice(produced.length - printed.length));
    } finally {
      clearTimeout(timer);
      await sw.close();
    }
  });

  it('an unknown topic is one line on stderr and exit 1 (produce and consume)', async () => {
    const produced = await cli(['produce', 'no-such-topic'], 'x\n');
    expect(produced.code).toBe(1);
    expectOneLineError(produced.stderr, /^spillway produce: UNKNOWN_TOPIC: .*no-such-topic/);
    expect(produced.stdout).toBe('');
    const consumed = await cli(['consume', 'no-such-topic', '--from', 'earliest']);
    expect(consumed.code).toBe(1);
    expectOneLineError(consumed.stderr, /^spillway consume: UNKNOWN_TOPIC: .*no-such-topic/);
  });

  it('--msg-id: a run repeated on a dedup topic writes nothing twice and prints the first positions', async () => {
    const created = await cli([
      'topic',
      'create',
      'deduped',
      '--partitions',
      '2',
      '--dedup-window-ms',
      '600000',
    ]);
    expect(created.code).toBe(0);
    expect(JSON.parse(created.stdout)).toMatchObject({ config: { dedupWindowMs: 600000 } });
    const one = await cli(['produce', 'deduped', '--value', 'v', '--msg-id', 'single', '--key', 'a']);
    const oneAgain = await cli(['produce', 'deduped', '--value', 'v', '--msg-id', 'single', '--key', 'b']);
    expect(one.code).toBe(0);
    expect(oneAgain.stdout).toBe(one.stdout);
    const input = `${Array.from({ length: 500 }, (_, i) => `row-${i}`).join('\n')}\n`;
    const first = await cli(['produce', 'deduped', '--msg-id', 'import-7'], input);
    const second = await cli(['produce', 'deduped', '--msg-id', 'import-7'], input);
    expect(first.code).toBe(0);
    expect(second.stdout).toBe(first.stdout);
    expect(first.stdout.trim().split('\n')).toHaveLength(500);
    const consumed = await cli(['consume', 'deduped', '--from', 'earliest', '--idle-exit-ms', '500']);
    const lines = consumed.stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { value: string; headers: Record<string, string> });
    expect(lines).toHaveLength(501);
    expect(new Set(lines.map((line) => line.headers['sw-msg-id'])).size).toBe(501);
    expect(lines.find((line) => line.value === 'row-9')?.headers['sw-msg-id']).toBe('import-7-10');
    // A bad msgId is a typed error, exit 1, one line.
    for (const bad of ['', 'x'.repeat(257)]) {
      const refused = await cli(['produce', 'deduped', '--value', 'v', '--msg-id', bad]);
      expect(refused.code).toBe(1);
      expectOneLineError(
        refused.stderr,
        /^spillway produce: INVALID_ARGUMENT: --msg-id must be 1 to 256 UTF-8 bytes/,
      );
    }
  });

  it('a partition the topic does not have is exit 1, one line', async () => {
    await createTopic('two', 2);
    const result = await cli(['produce', 'two', '--partition', '9', '--value', 'v']);
    expect(result.code).toBe(1);
    expectOneLineError(result.stderr, /UNKNOWN_PARTITION/);
  });

  it.each([
    [['produce', 'lines', '--bogus'], /Unknown option '--bogus'/, 'produce'],
    [['produce'], /produce needs exactly one TOPIC/, 'produce'],
    [['produce', 'lines', '--partition', 'two'], /--partition must be an integer/, 'produce'],
    [['produce', 'lines', '--delay-ms', 'soon'], /--delay-ms must be an integer/, 'produce'],
    [
      ['produce', 'lines', '--deliver-at', 'tomorrow'],
      /--deliver-at must be an ISO 8601 time or epoch ms/,
      'produce',
    ],
    [
      ['produce', 'lines', '--delay-ms', '1', '--deliver-at', '1'],
      /--delay-ms or --deliver-at, not both/,
      'produce',
    ],
    [['consume'], /consume needs exactly one TOPIC/, 'consume'],
    [['consume', 'lines', '--mode', 'group'], /--mode needs --group/, 'consume'],
    [['consume', 'lines', '--mode', 'shared'], /--mode needs --group/, 'consume'],
    [
      ['consume', 'lines', '--group', 'g', '--mode', 'fanout'],
      /--mode must be group, broadcast, shared or key_shared/,
      'consume',
    ],
    [['consume', 'lines', '--from', 'middle'], /--from must be earliest or latest/, 'consume'],
    [['consume', 'lines', '--max-messages', '0'], /--max-messages must be an integer >= 1/, 'consume'],
  ])('bad usage %j: exit 2 with the usage', async (args, pattern, command) => {
    const result = await cli(args);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(pattern);
    expect(result.stderr).toContain(`usage: spillway ${command} TOPIC`);
    expect(result.stderr).not.toMatch(/\n\s+at /);
    expect(result.stdout).toBe('');
  });

  it('an unreachable broker: exit 1 and one clear line, for every client command', async () => {
    const port = await freePort(); // nothing listens there
    const url = `ws://127.0.0.1:${port}`;
    for (const args of [
      ['topic', 'list'],
      ['produce', 'x', '--value', 'v'],
      ['consume', 'x'],
    ]) {
      const result = await runCli([...args, '--broker', url], { timeoutMs: 20_000 });
      expect(result.code).toBe(1);
      expectOneLineError(
        result.stderr,
        new RegExp(
          `^spillway ${args[0]}: CONNECTION_CLOSED: cannot connect to ws://127\\.0\\.0\\.1:${port}: .*ECONNREFUSED`,
        ),
      );
    }
  });

  it("the client's connect error is a SpillwayError with a one-line message (no stack in it)", async () => {
    const port = await freePort();
    const error = await Spillway.connect(`ws://127.0.0.1:${port}`, { connectTimeoutMs: 2000 }).catch(
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(SpillwayError);
    const spillwayError = error as SpillwayError;
    expect(spillwayError.code).toBe('CONNECTION_CLOSED');
    expect(spillwayError.retriable).toBe(true);
    expect(spillwayError.message).toBe(
      `cannot connect to ws://127.0.0.1:${port}: connect ECONNREFUSED 127.0.0.1:${port}`,
    );
  });

  it('a reader that goes away (consume | head -1) ends the consumer quietly, exit 0', async () => {
    await createTopic('piped', 1);
    const input = `${Array.from({ length: 20_000 }, (_, i) => `m-${i}`).join('\n')}\n`;
    expect((await cli(['produce', 'piped'], input)).code).toBe(0);
    for (const args of [
      ['consume', 'piped', '--from', 'earliest', '--idle-exit-ms', '5000'],
      ['produce', 'piped'],
    ]) {
      const child = spawn(process.execPath, [cliPath, ...args, '--broker', broker.url], {
        stdio: ['pipe', 'pipe', 'pipe'],
      });
      let stderr = '';
      child.stderr.on('data', (chunk: Buffer) => {
        stderr += chunk.toString();
      });
      child.stdin.on('error', () => undefined);
      child.stdin.end(args[0] === 'produce' ? input : '');
      // Read the first chunk, then close our end of the pipe, as `head -1` does.
      child.stdout.once('data', () => child.stdout.destroy());
      const timer = setTimeout(() => child.pid !== undefined && process.kill(child.pid, 'SIGKILL'), 20_000);
      const code = await new Promise<number | null>((resolve) =>
        child.once('close', (exit) => resolve(exit)),
      );
      clearTimeout(timer);
      expect({ args, code, stderr }).toEqual({ args, code: 0, stderr: '' });
    }
  });

  it('--help of produce and consume prints the usage, exit 0', async () => {
    const produce = await runCli(['produce', '--help']);
    expect(produce.code).toBe(0);
    expect(produce.stdout).toContain('usage: spillway produce TOPIC');
    const consume = await runCli(['consume', '--help']);
    expect(consume.code).toBe(0);
    expect(consume.stdout).toContain('usage: spillway consume TOPIC');
  });
});
