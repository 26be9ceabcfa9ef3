/**
 * The corruption matrix (issue 9), against real broker processes (`spillway broker`, dist/): one
 * data directory is written through the broker (topic `t`, partition 0 with N acknowledged
 * messages over several 64 KiB segments, partition 1 with a few), stopped cleanly, and copied for
 * each case; the test damages the copy's files, starts a broker on it, and records
 *  - the broker's answer: its start-up report (stderr), GET /v1/health/details, /metrics, and what
 *    a fetch of the damaged partition answers (PARTITION_DAMAGED) while partition 1 serves;
 *  - `spillway repair t 0` when the partition was stopped, and what it says it set aside;
 *  - what a consumer then reads of partition 0, and the count of acknowledged messages that became
 *    unreadable, which must equal the messages inside the damaged bytes and nothing more;
 *  - that no file the damage left was deleted (each is still in the partition directory, or was
 *    moved into quarantine/).
 *
 * Payload damage under a valid checkpoint is not found at open (indexes are trusted; see
 * docs/OPERATIONS.md): those cases run with the checkpoint gone, which makes the open scan and
 * CRC-check everything.
 */
import {
  closeSync,
  cpSync,
  existsSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  truncateSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Spillway } from '../../src/client/index.js';
import {
  BatchHeader,
  batchBaseOffset,
  batchLengthAt,
  batchRecordCountAt,
  checkBatchHeader,
} from '../../src/format/batch-header.js';
import { BrokerProcess, ensureBuilt, killBrokers, runCli } from '../cli/cli-process.js';

const messageCount = 3000;
const otherPartitionCount = 50;
const segmentBytes = 64 * 1024;

let root: string;
let template: string;

interface BatchOnDisk {
  file: string;
  position: number;
  length: number;
  baseOffset: number;
  recordCount: number;
}

function partitionDir(dataDir: string, partition = 0): string {
  return join(dataDir, 'topics', 't', String(partition));
}

function segmentFiles(dir: string): string[] {
  return readdirSync(dir)
    .filter((name) => name.endsWith('.log'))
    .sort();
}

/** Every batch of every segment of `dir`, walked by its headers. */
function batchesOf(dir: string): BatchOnDisk[] {
  const batches: BatchOnDisk[] = [];
  for (const file of segmentFiles(dir)) {
    const bytes = readFileSync(join(dir, file));
    let position = 0;
    while (checkBatchHeader(bytes, position, bytes.length - position) === null) {
      const length = batchLengthAt(bytes, position);
      batches.push({
        file,
        position,
        length,
        baseOffset: batchBaseOffset(bytes, position),
        recordCount: batchRecordCountAt(bytes, position),
      });
      position += length;
    }
  }
  return batches;
}

function flipByte(path: string, position: number): void {
  const bytes = readFileSync(path);
  const fd = openSync(path, 'r+');
  try {
    writeSync(fd, Buffer.from([bytes[position]! ^ 0x5a]), 0, 1, position);
  } finally {
    closeSync(fd);
  }
}

/** Every file name under `dir` (recursively, relative). */
function filesUnder(dir: string, prefix = ''): string[] {
  if (!existsSync(dir)) return [];
  const names: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.isDirectory()) names.push(...filesUnder(join(dir, entry.name), `${prefix}${entry.name}/`));
    else names.push(`${prefix}${entry.name}`);
  }
  return names;
}

// biome-ignore lint/suspicious/noExplicitAny: test-side view of JSON answers of several shapes
type HttpBody = any;

async function httpJson(broker: BrokerProcess, path: string): Promise<{ status: number; body: HttpBody }> {
  const response = await fetch(`http://127.0.0.1:${broker.port}${path}`);
  const text = await response.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // metrics: text
  }
  return { status: response.status, body };
}

/**
 * Reads a partition from its start over HTTP; returns the values read, in order. The topic is
 * `always`: consumers see what is synced, and after an unclean open (no checkpoint) the open syncs
 * in the background, so first wait until the durable offset reached the log end.
 */
async function readAll(broker: BrokerProcess, partition: number): Promise<string[]> {
  for (let attempt = 0; ; attempt++) {
    const { body } = await httpJson(broker, '/v1/topics/t');
    const state = body.partitions[partition];
    if (state.durableOffset === state.logEndOffset) break;
    if (attempt > 1000) throw new Error(`partition ${partition} never synced: ${JSON.stringify(state)}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  const values: string[] = [];
  let offset: number | 'earliest' = 'earliest';
  for (let round = 0; round < 1000; round++) {
    const { status, body } = await httpJson(
      broker,
      `/v1/topics/t/partitions/${partition}/messages?offset=${offset}&maxMessages=10000`,
    );
    expect(status, JSON.stringify(body)).toBe(200);
    for (const message of body.messages as Array<{ value: string }>) values.push(message.value.trim());
    if (body.nextOffset >= body.highWatermark) return values;
    offset = body.nextOffset;
  }
  throw new Error('readAll did not reach the end');
}

function messageValue(index: number): string {
  return `m${index}`.padEnd(100, ' ');
}

beforeAll(async () => {
  ensureBuilt();
  root = mkdtempSync(join(tmpdir(), 'spillway-integrity-'));
  template = join(root, 'template');
  const broker = await BrokerProcess.start(['--data-dir', template]);
  const sw = await Spillway.connect(broker.url);
  try {
    await sw.admin.createTopic('t', { partitions: 2, segmentBytes, durability: 'always' });
    const producer = sw.producer({ batchBytes: 4096, lingerMs: 1 });
    const sends: Array<Promise<unknown>> = [];
    for (let i = 0; i < messageCount; i++)
      sends.push(producer.send('t', { value: messageValue(i), partition: 0 }));
    for (let i = 0; i < otherPartitionCount; i++) {
      sends.push(producer.send('t', { value: messageValue(i), partition: 1 }));
    }
    const acks = (await Promise.all(sends)) as Array<{ partition: number; offset: number }>;
    expect(acks.filter((ack) => ack.partition === 0).map((ack) => ack.offset)).toEqual(
      Array.from({ length: messageCount }, (_, i) => i),
    );
    await producer.close();
  } finally {
    await sw.close();
  }
  expect(await broker.stop('SIGTERM')).toEqual({ code: 0, signal: null });
  expect(segmentFiles(partitionDir(template)).length).toBeGreaterThanOrEqual(4);
}, 60_000);

afterAll(() => {
  killBrokers();
  rmSync(root, { recursive: true, force: true });
});

interface Case {
  name: string;
  /** Damages partition 0 of `dataDir`; returns the acknowledged messages inside the damaged bytes. */
  damage(dir: string, batches: BatchOnDisk[]): number;
  /** 'stopped': PARTITION_DAMAGED until repaired; 'serves': opens (maybe with a warning). */
  expect: 'stopped' | 'serves';
  /** A pattern the start-up report on stderr must hold. */
  report: RegExp;
}

const checkpoint = (dir: string): string => join(dir, 'recovery-point.checkpoint');
const recordsOf = (batches: BatchOnDisk[]): number => batches.reduce((sum, b) => sum + b.recordCount, 0);
const inFile = (batches: BatchOnDisk[], file: string): BatchOnDisk[] =>
  batches.filter((b) => b.file === file);
/** A batch in the middle of segment `k` (files sorted). */
const middleBatch = (batches: BatchOnDisk[], k: number): BatchOnDisk => {
  const files = [...new Set(batches.map((b) => b.file))];
  const own = inFile(batches, files[k]!);
  return own[Math.floor(own.length / 2)]!;
};

const cases: Case[] = [
  {
    name: 'checkpoint garbled',
    damage: (dir) => {
      writeFileSync(checkpoint(dir), '{"version":1,"recoveryPoint":12');
      return 0;
    },
    expect: 'serves',
    report: /warning: t\/0: recovery checkpoint unusable/,
  },
  {
    name: 'checkpoint gone',
    damage: (dir) => {
      unlinkSync(checkpoint(dir));
      return 0;
    },
    expect: 'serves',
    report: /warning: t\/0: recovery checkpoint unusable \(recovery-point.checkpoint is missing\)/,
  },
  {
    name: 'checkpoint gone + payload bit flip in a sealed segment (the issue: 20,000 -> 10,556)',
    damage: (dir, batches) => {
      unlinkSync(checkpoint(dir));
      const batch = middleBatch(batches, 1);
      for (let i = 0; i < 4; i++)
        flipByte(join(dir, batch.file), batch.position + BatchHeader.size + 10 + i * 7);
      return batch.recordCount;
    },
    expect: 'stopped',
    report: /damage: t\/0: stopped: corrupt-data in .*00000\d*\.log at position \d+: CRC32C/,
  },
  {
    name: 'checkpoint garbled + header (length) bit flip in a sealed segment',
    damage: (dir, batches) => {
      writeFileSync(checkpoint(dir), 'garbage');
      const batch = middleBatch(batches, 2);
      flipByte(join(dir, batch.file), batch.position + BatchHeader.batchLength + 1);
      return batch.recordCount;
    },
    expect: 'stopped',
    report: /damage: t\/0: stopped: corrupt-data/,
  },
  {
    name: 'checkpoint gone + payload bit flip in the active segment, valid batches after it',
    damage: (dir, batches) => {
      unlinkSync(checkpoint(dir));
      const own = inFile(batches, segmentFiles(dir).at(-1)!);
      expect(own.length).toBeGreaterThanOrEqual(2);
      const batch = own[own.length - 2]!;
      flipByte(join(dir, batch.file), batch.position + batch.length - 3);
      return batch.recordCount;
    },
    expect: 'stopped',
    report: /valid batches follow: not a torn write/,
  },
  {
    name: 'checkpoint gone + header bit flip in the last batch (a torn tail: durable point unknown)',
    damage: (dir, batches) => {
      unlinkSync(checkpoint(dir));
      const batch = batches.at(-1)!;
      flipByte(join(dir, batch.file), batch.position + BatchHeader.magic);
      return batch.recordCount;
    },
    expect: 'serves',
    report: /warning: t\/0: torn tail cut in .* at position \d+/,
  },
  {
    name: 'sealed segment missing in the middle',
    damage: (dir, batches) => {
      const file = segmentFiles(dir)[2]!;
      for (const suffix of ['.log', '.index', '.timeindex'])
        rmSync(join(dir, file.replace('.log', suffix)), { force: true });
      return recordsOf(inFile(batches, file));
    },
    expect: 'stopped',
    report: /damage: t\/0: stopped: missing-data .*a segment file is missing/,
  },
  {
    name: 'first segment missing',
    damage: (dir, batches) => {
      const file = segmentFiles(dir)[0]!;
      unlinkSync(join(dir, file));
      return recordsOf(inFile(batches, file));
    },
    expect: 'stopped',
    report: /damage: t\/0: stopped: missing-data .*first segment file starts at/,
  },
  {
    name: 'active segment truncated at a batch boundary',
    damage: (dir, batches) => {
      const file = segmentFiles(dir).at(-1)!;
      const own = inFile(batches, file);
      const cut = own[Math.floor(own.length / 2)]!;
      truncateSync(join(dir, file), cut.position);
      return recordsOf(own.filter((b) => b.position >= cut.position));
    },
    expect: 'stopped',
    report: /damage: t\/0: stopped: missing-data .*cut short/,
  },
  {
    name: 'active segment truncated inside a batch',
    damage: (dir, batches) => {
      const file = segmentFiles(dir).at(-1)!;
      const own = inFile(batches, file);
      const cut = own[Math.floor(own.length / 2)]!;
      truncateSync(join(dir, file), cut.position + Math.floor(cut.length / 2));
      return recordsOf(own.filter((b) => b.position >= cut.position));
    },
    expect: 'stopped',
    report: /damage: t\/0: stopped: corrupt-data/,
  },
  {
    name: 'active segment deleted',
    damage: (dir, batches) => {
      const file = segmentFiles(dir).at(-1)!;
      unlinkSync(join(dir, file));
      return recordsOf(inFile(batches, file));
    },
    expect: 'stopped',
    report: /damage: t\/0: stopped: missing-data/,
  },
  {
    name: 'index files deleted',
    damage: (dir) => {
      for (const name of readdirSync(dir)) if (name.endsWith('.index')) unlinkSync(join(dir, name));
      return 0;
    },
    expect: 'serves',
    report: /info: t\/0: \d+ index file\(s\) rebuilt/,
  },
  {
    name: 'partition directory deleted',
    damage: (dir) => {
      rmSync(dir, { recursive: true });
      return messageCount;
    },
    expect: 'stopped',
    report: /damage: t\/0: stopped: partition directory .* is missing/,
  },
];

/** One line per case for the report printed at the end (what the matrix measured). */
const table: string[] = [];

describe('corruption matrix: damage at start, real broker processes', () => {
  for (const testCase of cases) {
    it(testCase.name, async () => {
      const dataDir = join(root, testCase.name.replace(/[^a-z0-9]+/gi, '-'));
      cpSync(template, dataDir, { recursive: true });
      const dir = partitionDir(dataDir);
      const expectedLost = testCase.damage(dir, batchesOf(partitionDir(template)));
      const filesAfterDamage = filesUnder(dir);

      const broker = await BrokerProcess.start(['--data-dir', dataDir]);
      try {
        expect(broker.stderr).toMatch(testCase.report);
        expect(broker.stderr).toMatch(/spillway: opened .*: 1 topic\(s\), 2 partition\(s\)/);
        const health = await httpJson(broker, '/v1/health/details');
        expect(health.status).toBe(200);
        // Disk and scrub figures come along (the scrub's findings: docs/OPERATIONS.md).
        expect(health.body.storage).toMatchObject({ disk: {}, scrub: { damageFound: expect.any(Number) } });
        // The other partition serves whatever happened to partition 0.
        expect(await readAll(broker, 1)).toHaveLength(otherPartitionCount);

        let answer = 'serves';
        let setAside = 0;
        if (testCase.expect === 'stopped') {
          expect(health.body.status).toBe('degraded');
          expect(health.body.damagedPartitions).toMatchObject([{ topic: 't', partition: 0 }]);
          const fetched = await httpJson(broker, '/v1/topics/t/partitions/0/messages?offset=0');
          expect(fetched.status).toBe(503);
          expect(fetched.body.error.code).toBe('PARTITION_DAMAGED');
          const metrics = await httpJson(broker, '/metrics');
          expect(metrics.body).toMatch(
            /spillway_partition_damaged\{topic="t",partition="0",kind="[a-z-]+"\} 1/,
          );
          const doctor = await runCli(['doctor', '--broker', broker.url]);
          expect(doctor.code).toBe(1);
          expect(doctor.stdout).toMatch(/fix: .*spillway repair t 0/);

          const repair = await runCli(['repair', 't', '0', '--json', '--broker', broker.url]);
          expect(repair.code, repair.stderr).toBe(0);
          const result = JSON.parse(repair.stdout) as {
            setAside: Array<{ fromOffset: number; toOffset: number }>;
            recreatedEmpty: boolean;
          };
          setAside = result.setAside.reduce((sum, range) => sum + range.toOffset - range.fromOffset, 0);
          if (!result.recreatedEmpty) expect(setAside).toBe(expectedLost);
          answer = `stopped (PARTITION_DAMAGED); repair set aside ${result.recreatedEmpty ? 'the lost directory' : `${setAside} offset(s)`}`;
          const after = await httpJson(broker, '/v1/health/details');
          expect(after.body.status).toBe('ok');
          expect(after.body.repairs).toHaveLength(1);
        } else {
          expect(health.body.status).toBe('ok');
        }

        // What a consumer reads now: every message outside the damaged bytes, in order, unaltered.
        const values = await readAll(broker, 0);
        const expectedIndexes = values.map((value) => Number(value.slice(1)));
        for (let i = 1; i < expectedIndexes.length; i++) {
          expect(expectedIndexes[i]!).toBeGreaterThan(expectedIndexes[i - 1]!);
        }
        for (const value of values) expect(value).toBe(messageValue(Number(value.slice(1))).trim());
        const unreadable = messageCount - values.length;
        expect(unreadable).toBe(expectedLost);

        // No file deleted: each is still in the partition directory or was moved into quarantine/.
        const now = filesUnder(dir);
        for (const name of filesAfterDamage) {
          const kept = now.includes(name) || now.some((other) => other.startsWith(`quarantine/${name}.`));
          expect(kept, `${name} is gone`).toBe(true);
        }
        table.push(`${testCase.name}: ${answer}; unreadable ${unreadable} (expected ${expectedLost})`);
      } finally {
        await broker.stop('SIGTERM');
      }
    }, 60_000);
  }

  it('prints the matrix', () => {
    console.log(`corruption matrix (${messageCount} acknowledged messages):\n  ${table.join('\n  ')}`);
    expect(table.length).toBe(cases.length);
  });
});
