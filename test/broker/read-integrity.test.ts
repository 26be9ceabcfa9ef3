/**
 * Corrupt bytes are never served: a payload bit flip on disk (made by the test, in the segment file)
 * is caught by the HTTP fetch (CORRUPT_LOG naming the offsets), by the WebSocket consumer (fail, or
 * skip with the offsets reported), and by the scrub (finding with file, position, offsets; the data
 * left as it was), and counted in /metrics.
 */
import { createHash } from 'node:crypto';
import { closeSync, openSync, readdirSync, readFileSync, readSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { batchBaseOffset, batchLengthAt, batchRecordCountAt } from '../../src/format/batch-header.js';
import { encodeBatch } from '../../src/format/record-batch.js';
import { connect, openBroker, serve } from '../client/helpers.js';

/** Segment files of a partition, oldest first. */
function segmentFiles(dataDir: string, topic: string, partition: number): string[] {
  const directory = join(dataDir, 'topics', topic, String(partition));
  return readdirSync(directory)
    .filter((name) => name.endsWith('.log'))
    .sort()
    .map((name) => join(directory, name));
}

/**
 * Flips one bit inside the last bytes of the batch holding `offset` (its record data, covered by the
 * CRC32C), through write() on the file: the broker's map sees it (shared page cache), as with bit rot
 * read back from disk. Returns the file and the batch's position.
 */
function flipPayloadBit(dataDir: string, topic: string, partition: number, offset: number) {
  for (const file of segmentFiles(dataDir, topic, partition)) {
    const bytes = readFileSync(file);
    let position = 0;
    while (position + 61 <= bytes.length) {
      const length = batchLengthAt(bytes, position);
      if (length === 0) break;
      const base = batchBaseOffset(bytes, position);
      const next = base + batchRecordCountAt(bytes, position);
      if (base <= offset && offset < next) {
        const target = position + length - 3;
        const fd = openSync(file, 'r+');
        const one = Buffer.alloc(1);
        readSync(fd, one, 0, 1, target);
        one[0]! ^= 0x10;
        writeSync(fd, one, 0, 1, target);
        closeSync(fd);
        return { file, position };
      }
      position += length;
    }
  }
  throw new Error(`no batch holds offset ${offset}`);
}

async function setup(segmentBytes = 16 * 1024 * 1024) {
  const broker = await openBroker({ segmentBytes, scrubBytesPerSecond: 0 });
  const server = await serve(broker);
  const sw = await connect(server.url);
  await sw.admin.createTopic('t');
  // Three batches of three messages: offsets 0-2, 3-5, 6-8.
  for (const tag of ['a', 'b', 'c']) {
    await broker.messages.produce('t', 0, encodeBatch([0, 1, 2].map((i) => ({ value: `${tag}${i}` }))));
  }
  const httpBase = server.url.replace(/^ws/, 'http');
  return { broker, server, sw, httpBase, dataDir: broker.dataDir };
}

describe('reads verify CRC32C', () => {
  test('HTTP fetch answers the intact messages, then CORRUPT_LOG naming the damaged offsets, never altered values', async () => {
    const { httpBase, dataDir } = await setup();
    flipPayloadBit(dataDir, 't', 0, 3);
    const first = await fetch(`${httpBase}/v1/topics/t/partitions/0/messages?offset=0&maxMessages=100`);
    expect(first.status).toBe(200);
    const body = (await first.json()) as { messages: Array<{ value: string }>; nextOffset: number };
    expect(body.messages.map((message) => message.value)).toEqual(['a0', 'a1', 'a2']);
    expect(body.nextOffset).toBe(3);
    const second = await fetch(`${httpBase}/v1/topics/t/partitions/0/messages?offset=3`);
    expect(second.status).toBe(500);
    const error = (await second.json()) as { error: { code: string; message: string } };
    expect(error.error.code).toBe('CORRUPT_LOG');
    expect(error.error.message).toContain('t/0 at offsets 3..5');
    expect(error.error.message).toContain('read from offset 6');
    const past = await fetch(`${httpBase}/v1/topics/t/partitions/0/messages?offset=6`);
    const rest = (await past.json()) as { messages: Array<{ value: string }> };
    expect(rest.messages.map((message) => message.value)).toEqual(['c0', 'c1', 'c2']);
  });

  test("the consumer fails by default, and with onCorruptBatch 'skip' passes over the batch and reports it", async () => {
    const { sw, dataDir } = await setup();
    flipPayloadBit(dataDir, 't', 0, 4);
    const failing = sw.consumer({ topics: ['t'], from: 'earliest' });
    const seen: string[] = [];
    await expect(
      (async () => {
        for await (const message of failing) seen.push(message.value!.toString());
      })(),
    ).rejects.toMatchObject({ code: 'CORRUPT_BATCH' });
    expect(seen).toEqual(['a0', 'a1', 'a2']);

    const reported: Array<{ firstOffset: number; nextOffset: number }> = [];
    const skipping = sw.consumer({
      topics: ['t'],
      from: 'earliest',
      onCorruptBatch: 'skip',
      onSkippedBatch: (skipped) => reported.push(skipped),
    });
    const values: string[] = [];
    for await (const message of skipping) {
      values.push(message.value!.toString());
      if (values.length === 6) break;
    }
    expect(values).toEqual(['a0', 'a1', 'a2', 'c0', 'c1', 'c2']);
    expect(reported).toMatchObject([{ topic: 't', partition: 0, firstOffset: 3, nextOffset: 6 }]);
    expect(skipping.skippedBatches).toMatchObject({ batches: 1, offsets: 3 });
    expect(() => sw.consumer({ topics: ['t'], onCorruptBatch: 'ignore' as 'skip' })).toThrow(
      /onCorruptBatch/,
    );
  });

  test('the scrub finds damage in a sealed segment, reports file, position and offsets, and changes nothing', async () => {
    const { broker, sw, httpBase, dataDir } = await setup(64 * 1024);
    const producer = sw.producer({ lingerMs: 0 });
    // Enough 8 KiB messages to seal a few 64 KiB segments.
    for (let i = 0; i < 40; i++) await producer.send('t', { value: `v${i}`.padEnd(8000, '.'), partition: 0 });
    await producer.close();
    const files = segmentFiles(dataDir, 't', 0);
    expect(files.length).toBeGreaterThan(2);
    const clean = await broker.scrubber.scrubPass();
    expect(clean.damage).toEqual([]);
    expect(clean.segments).toBe(files.length - 1);
    const damaged = flipPayloadBit(dataDir, 't', 0, 20);
    const hashes = files.map((file) => createHash('sha256').update(readFileSync(file)).digest('hex'));
    const pass = await broker.scrubber.scrubPass(50 * 1024 * 1024);
    expect(pass.damage).toHaveLength(1);
    const finding = pass.damage[0]!;
    expect(finding).toMatchObject({
      topic: 't',
      partition: 0,
      file: damaged.file,
      position: damaged.position,
    });
    expect(finding.baseOffset).toBeLessThanOrEqual(20);
    expect(finding.nextOffset).toBeGreaterThan(20);
    expect(files.map((file) => createHash('sha256').update(readFileSync(file)).digest('hex'))).toEqual(
      hashes,
    );
    // A later pass finds the same damage again, but counts it once.
    await broker.scrubber.scrubPass();
    expect(broker.scrubber.stats).toMatchObject({ damageFound: 1, passesCompleted: 3 });
    const metrics = await (await fetch(`${httpBase}/metrics`)).text();
    expect(metrics).toMatch(/^spillway_scrub_damage_total 1$/m);
    expect(metrics).toMatch(/^spillway_scrub_bytes_total [1-9]\d*$/m);
    expect(metrics).toContain(`position="${damaged.position}"`);
    expect(metrics).toMatch(/^spillway_disk_reserve_bytes \d+$/m);
    expect(metrics).toMatch(/^spillway_preallocated_bytes \d+$/m);
  });

  test('starts the background scrub at the configured rate and refuses a negative one', async () => {
    const broker = await openBroker({ segmentBytes: 64 * 1024, scrubBytesPerSecond: 1024 * 1024 });
    expect(broker.scrubber.stats).toMatchObject({ running: true, bytesPerSecond: 1024 * 1024 });
    await expect(openBroker({ scrubBytesPerSecond: -1 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });
});
