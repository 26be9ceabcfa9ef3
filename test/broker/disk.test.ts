/**
 * Disk use in proportion to use, a full disk, interrupted creates and descriptor exhaustion, against
 * real broker processes (`spillway broker`) and real file systems:
 *  - a small tmpfs data directory (mounted by the test when run as root, skipped with a printed
 *    reason otherwise): fill until STORAGE_FULL, restart on a completely full disk, read everything,
 *    free space by deleting a topic, write again;
 *  - 1,000 partitions with one message each: allocated blocks of the data directory (what `du` says);
 *  - a broker killed while creating a topic leaves nothing behind;
 *  - a broker with a low `ulimit -n` refuses creates with TOO_MANY_OPEN_FILES and leaves no half-made
 *    topic.
 */
import { execFileSync } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  rmSync,
  statSync,
  truncateSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { Spillway } from '../../src/client/index.js';
import { encodeBatch } from '../../src/format/record-batch.js';
import { Broker } from '../../src/spillway-broker.js';
import { BrokerProcess, ensureBuilt, killBrokers } from '../cli/cli-process.js';

const directories: string[] = [];
const clients: Spillway[] = [];

beforeAll(() => ensureBuilt());
afterEach(async () => {
  for (const client of clients.splice(0)) await client.close().catch(() => undefined);
  killBrokers();
});
afterAll(() => {
  for (const directory of directories.splice(0)) rmSync(directory, { recursive: true, force: true });
});

function temporaryDirectory(): string {
  const path = mkdtempSync(join(tmpdir(), 'spillway-disk-'));
  directories.push(path);
  return path;
}

/** Bytes of disk blocks allocated under `path` (st_blocks, as `du` counts them). */
function allocatedBytes(path: string): number {
  const stats = statSync(path);
  if (!stats.isDirectory()) return stats.blocks * 512;
  let total = stats.blocks * 512;
  for (const entry of readdirSync(path)) total += allocatedBytes(join(path, entry));
  return total;
}

async function client(url: string): Promise<Spillway> {
  const sw = await Spillway.connect(url);
  clients.push(sw);
  return sw;
}

/** POST one message through the HTTP API: the status and the JSON answer. */
async function produceHttp(base: string, topic: string, value: string) {
  const response = await fetch(`${base}/v1/topics/${topic}/messages`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ messages: [{ value, partition: 0 }] }),
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

/** Every value of partition 0 of `topic`, through the HTTP fetch (which verifies CRC32C). */
async function readAllHttp(base: string, topic: string): Promise<string[]> {
  const values: string[] = [];
  let offset = 0;
  for (;;) {
    const response = await fetch(
      `${base}/v1/topics/${topic}/partitions/0/messages?offset=${offset}&maxMessages=1000&maxBytes=4194304`,
    );
    expect(response.status).toBe(200);
    const body = (await response.json()) as { messages: Array<{ value: string }>; nextOffset: number };
    if (body.messages.length === 0) return values;
    for (const message of body.messages) values.push(message.value);
    offset = body.nextOffset;
  }
}

describe('a full disk (tmpfs of 64 MiB)', () => {
  let mountPoint: string | null = null;
  let skipReason = '';

  beforeAll(() => {
    const directory = temporaryDirectory();
    if (process.getuid?.() !== 0) {
      skipReason = 'not run as root: cannot mount a tmpfs';
      return;
    }
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64m', 'tmpfs', directory], { stdio: 'pipe' });
      mountPoint = directory;
    } catch (error) {
      skipReason = `mount -t tmpfs failed: ${(error as Error).message.split('\n')[0]}`;
    }
  });
  afterAll(async () => {
    killBrokers();
    if (mountPoint === null) return;
    // A broker killed just now may still hold files there for a moment: retry, then detach lazily.
    for (let attempt = 0; attempt < 50; attempt++) {
      try {
        execFileSync('umount', [mountPoint], { stdio: 'pipe' });
        return;
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
    execFileSync('umount', ['-l', mountPoint], { stdio: 'pipe' });
  });

  test('fill, refuse cleanly, restart while full, read everything, free space, write again', async (context) => {
    if (mountPoint === null) {
      console.log(`disk-full test skipped: ${skipReason}`);
      context.skip();
      return;
    }
    const dataDir = join(mountPoint, 'data');
    const reserve = 8 * 1024 * 1024;
    const args = ['--data-dir', dataDir, '--disk-reserve-bytes', String(reserve), '--durability', 'none'];
    let broker = await BrokerProcess.start(args);
    let base = `http://127.0.0.1:${broker.port}`;
    const sw = await client(broker.url);
    for (const name of ['keep', 'victim']) await sw.admin.createTopic(name, { segmentBytes: 1024 * 1024 });
    const value = (tag: string, i: number): string => `${tag}-${i}-`.padEnd(60 * 1024, 'x');
    const acked: Record<string, string[]> = { keep: [], victim: [] };
    let refusal: Record<string, unknown> | null = null;
    for (let i = 0; refusal === null && i < 2000; i++) {
      const topic = i % 2 === 0 ? 'keep' : 'victim';
      const answer = await produceHttp(base, topic, value(topic, i));
      if (answer.status === 200) acked[topic]!.push(value(topic, i));
      else refusal = { status: answer.status, ...answer.body };
    }
    expect(refusal).toMatchObject({ status: 503, error: { code: 'STORAGE_FULL' } });
    expect(String((refusal!['error'] as { message: string }).message)).toContain('disk reserve');
    expect(acked['keep']!.length + acked['victim']!.length).toBeGreaterThan(500); // ~56 MiB of 64
    expect(broker.running).toBe(true);
    await sw.close();
    expect(await broker.stop()).toEqual({ code: 0, signal: null });

    // Fill what is left: the disk is now completely full.
    const filler = join(mountPoint, 'filler');
    const fd = openSync(filler, 'w');
    const chunk = Buffer.alloc(64 * 1024, 1);
    for (;;) {
      try {
        writeSync(fd, chunk, 0, chunk.length);
      } catch {
        try {
          writeSync(fd, chunk, 0, 4096);
        } catch {
          break;
        }
      }
    }
    closeSync(fd);

    // Opening on a full disk works (nothing is preallocated at open) and serves every message.
    broker = await BrokerProcess.start(args);
    base = `http://127.0.0.1:${broker.port}`;
    expect(await readAllHttp(base, 'keep')).toEqual(acked['keep']);
    expect(await readAllHttp(base, 'victim')).toEqual(acked['victim']);
    const refused = await produceHttp(base, 'keep', 'no room');
    expect(refused).toMatchObject({ status: 503, body: { error: { code: 'STORAGE_FULL' } } });

    // Free a little (still below the reserve), delete a topic: its space is back, writes go on.
    truncateSync(filler, statSync(filler).size - 1024 * 1024);
    const admin = await client(broker.url);
    await admin.admin.deleteTopic('victim');
    const written = await produceHttp(base, 'keep', 'after the deletion');
    expect(written, JSON.stringify(written)).toMatchObject({ status: 200 });
    expect(await readAllHttp(base, 'keep')).toEqual([...acked['keep']!, 'after the deletion']);
    expect(broker.running).toBe(true);
    await admin.close();
    expect(await broker.stop()).toEqual({ code: 0, signal: null });
    rmSync(filler);
  }, 120_000);
});

describe('disk in proportion to use', () => {
  test('300 partitions with one message each hold a few KiB each, not 2 × segmentBytes', async () => {
    const dataDir = temporaryDirectory();
    const broker = await Broker.open({ dataDir, durability: 'none', scrubBytesPerSecond: 0 });
    try {
      const afterOpen = allocatedBytes(dataDir);
      // The internal state logs' own (fixed) preallocation, whatever the number of partitions.
      const preallocatedAtOpen = broker.storageStats().preallocatedBytes;
      for (let topic = 0; topic < 10; topic++) await broker.topics.create(`t${topic}`, { partitions: 30 });
      const afterCreate = allocatedBytes(dataDir);
      for (let topic = 0; topic < 10; topic++) {
        for (let partition = 0; partition < 30; partition++) {
          await broker.messages.produce(
            `t${topic}`,
            partition,
            encodeBatch([{ value: 'one small message' }]),
          );
        }
      }
      const afterWrite = allocatedBytes(dataDir);
      const perPartition = (afterWrite - afterOpen) / 300;
      console.log(
        `preallocation: 300 partitions (segmentBytes 256 MiB): ${((afterCreate - afterOpen) / 2 ** 20).toFixed(1)} MiB after create, ${((afterWrite - afterOpen) / 2 ** 20).toFixed(1)} MiB after one message each (${(perPartition / 1024).toFixed(1)} KiB per partition)`,
      );
      expect(afterCreate - afterOpen).toBeLessThan(300 * 64 * 1024);
      expect(perPartition).toBeLessThanOrEqual(256 * 1024);
      expect(broker.storageStats().preallocatedBytes - preallocatedAtOpen).toBeLessThanOrEqual(
        300 * 64 * 1024,
      );
    } finally {
      await broker.close();
    }
  }, 180_000);

  test('the active segment grows in steps and reads stay right', async () => {
    const dataDir = temporaryDirectory();
    const broker = await Broker.open({ dataDir, durability: 'none', scrubBytesPerSecond: 0 });
    try {
      await broker.topics.create('grow');
      const file = join(dataDir, 'topics', 'grow', '0', '00000000000000000000.log');
      expect(allocatedBytes(file)).toBe(0); // a sparse file: no block before the first append
      const sizes = new Set<number>();
      const value = 'v'.padEnd(100 * 1024, 'x');
      const early = await (async () => {
        await broker.messages.produce('grow', 0, encodeBatch([{ value: 'first' }]));
        return broker.messages.fetch('grow', 0, 0, { maxBytes: 1024, maxWaitMs: 0 });
      })();
      for (let i = 0; i < 100; i++) {
        await broker.messages.produce('grow', 0, encodeBatch([{ value }]));
        sizes.add(allocatedBytes(file));
      }
      // 10 MiB of data: a few doubling steps, far below the 256 MiB of the segment.
      expect(sizes.size).toBeGreaterThan(4);
      expect(Math.max(...sizes)).toBeLessThan(32 * 1024 * 1024);
      // A view taken before the growth steps still reads the same bytes.
      expect(Buffer.from(early.records).includes('first')).toBe(true);
      let offset = 0;
      let count = 0;
      while (offset < 101) {
        const result = await broker.messages.fetch('grow', 0, offset, { maxBytes: 1 << 20, maxWaitMs: 0 });
        count += result.nextOffset - offset;
        offset = result.nextOffset;
      }
      expect(count).toBe(101);
    } finally {
      await broker.close();
    }
    // Opening again allocates nothing (the segment is trimmed at close; the open only extends the
    // file sparsely).
    const file = join(dataDir, 'topics', 'grow', '0', '00000000000000000000.log');
    const blocks = allocatedBytes(file);
    const reopened = await Broker.open({ dataDir, scrubBytesPerSecond: 0 });
    expect(allocatedBytes(file)).toBe(blocks);
    await reopened.close();
  });
});

describe('creates that fail or are interrupted leave nothing behind', () => {
  test('a broker killed while creating a topic: the next open removes the half-made directory', async () => {
    const dataDir = temporaryDirectory();
    const broker = await BrokerProcess.start(['--data-dir', dataDir]);
    const sw = await client(broker.url);
    const marker = join(dataDir, 'topics', 'big', '.creating');
    const creating = sw.admin.createTopic('big', { partitions: 4000 }).catch(() => undefined);
    const deadline = Date.now() + 10_000;
    while (!existsSync(marker) && Date.now() < deadline)
      await new Promise((resolve) => setTimeout(resolve, 1));
    expect(existsSync(marker)).toBe(true);
    await new Promise((resolve) => setTimeout(resolve, 50));
    await broker.stop('SIGKILL');
    await creating;
    const partial = existsSync(join(dataDir, 'topics', 'big'))
      ? readdirSync(join(dataDir, 'topics', 'big')).length
      : 0;
    expect(partial).toBeGreaterThan(1); // killed in the middle: some partitions made, the mark still there

    const reopened = await Broker.open({ dataDir, scrubBytesPerSecond: 0 });
    try {
      const names = reopened.topics.list({ internal: true }).map((topic) => topic.name);
      if (names.includes('big')) {
        // The create had finished: then the whole topic is there.
        expect(reopened.topics.describe('big').partitionCount).toBe(4000);
      } else {
        expect(existsSync(join(dataDir, 'topics', 'big'))).toBe(false);
        expect(reopened.openReport.warnings.join('\n')).toMatch(/creation a crash interrupted/);
      }
      expect(readdirSync(join(dataDir, 'topics')).every((name) => names.includes(name))).toBe(true);
      expect(allocatedBytes(dataDir)).toBeLessThan(64 * 1024 * 1024);
    } finally {
      await reopened.close();
    }
  }, 60_000);

  test('out of file descriptors: TOO_MANY_OPEN_FILES, no half-made topic, the broker goes on', async () => {
    const dataDir = temporaryDirectory();
    const broker = await BrokerProcess.start(['--data-dir', dataDir], { openFilesMax: 200 });
    const sw = await client(broker.url);
    let refusal: unknown = null;
    let created = 0;
    for (let i = 0; i < 100 && refusal === null; i++) {
      try {
        await sw.admin.createTopic(`fd${i}`, { partitions: 16 });
        created++;
      } catch (error) {
        refusal = error;
      }
    }
    expect(refusal).toMatchObject({ code: 'TOO_MANY_OPEN_FILES' });
    expect(created).toBeGreaterThan(0);
    const topics = (await sw.admin.listTopics()).map((topic) => topic.name).sort();
    expect(topics).toHaveLength(created);
    const internal = (await sw.admin.listTopics({ internal: true }))
      .map((topic) => topic.name)
      .filter((name) => name.startsWith('__'));
    // On disk: exactly the topics served, each whole, no mark of an unfinished create.
    expect(readdirSync(join(dataDir, 'topics')).sort()).toEqual([...internal, ...topics].sort());
    for (const topic of topics) {
      expect(readdirSync(join(dataDir, 'topics', topic)).sort((a, b) => Number(a) - Number(b))).toEqual(
        Array.from({ length: 16 }, (_, partition) => String(partition)),
      );
    }
    // The broker still serves the topics it has.
    const producer = sw.producer({ lingerMs: 0 });
    expect(await producer.send('fd0', { value: 'still here', partition: 3 })).toMatchObject({ offset: 0 });
    await producer.close();
    await sw.close();
    expect(await broker.stop()).toEqual({ code: 0, signal: null });
    mkdirSync(join(dataDir, 'unused'), { recursive: true });
    const reopened = await Broker.open({ dataDir, scrubBytesPerSecond: 0 });
    expect(reopened.topics.list()).toHaveLength(created);
    expect(reopened.openReport.orphanTopicDirectories).toEqual([]);
    await reopened.close();
  }, 60_000);
});
