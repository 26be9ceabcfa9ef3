import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Broker } from '../../src/broker/index.js';
import { metadataFileName } from '../../src/broker/metadata-store.js';
import { partitionCountMax } from '../../src/limits.js';
import { CheckpointFile } from '../../src/storage/checkpoint-file.js';
import {
  batchOf,
  openBroker,
  readAll,
  rejectedCode,
  temporaryDirectory,
  thrownCode,
  valuesOf,
} from './helpers.js';

const fetchAll = { maxBytes: 1 << 20, maxWaitMs: 0 };

describe('Broker topics', () => {
  it('creates, lists, describes and deletes topics', async () => {
    const broker = await openBroker(temporaryDirectory());
    const before = Date.now();
    const created = await broker.createTopic('orders', {
      partitions: 3,
      durability: 'always',
      retentionMs: 60_000,
    });
    expect(created).toMatchObject({
      name: 'orders',
      partitionCount: 3,
      config: {
        partitions: 3,
        durability: 'always',
        retentionMs: 60_000,
        retentionBytes: -1,
        segmentBytes: 64 * 1024,
        dedupWindowMs: 0,
      },
    });
    expect(created.createdAtMs).toBeGreaterThanOrEqual(before);
    expect(created.partitions).toEqual(
      [0, 1, 2].map((partition) => ({
        partition,
        logStartOffset: 0,
        logEndOffset: 0,
        durableOffset: 0,
        sizeBytes: 0,
        segmentCount: 1,
      })),
    );
    await broker.createTopic('audit');
    expect(
      broker.listTopics().map((topic) => [topic.name, topic.partitionCount, topic.config.durability]),
    ).toEqual([
      ['audit', 1, 'none'],
      ['orders', 3, 'always'],
    ]);
    await broker.produce('orders', 1, batchOf('a', 2));
    expect(broker.describeTopic('orders').partitions[1]).toMatchObject({ logEndOffset: 2, durableOffset: 2 });
    await broker.deleteTopic('orders');
    expect(broker.listTopics().map((topic) => topic.name)).toEqual(['audit']);
    expect(thrownCode(() => broker.describeTopic('orders'))).toBe('UNKNOWN_TOPIC');
  });

  it('rejects bad names, bad configs, duplicates and unknown topics with their codes', async () => {
    const broker = await openBroker(temporaryDirectory());
    expect(await rejectedCode(broker.createTopic('..'))).toBe('INVALID_TOPIC_NAME');
    expect(await rejectedCode(broker.createTopic('a/b'))).toBe('INVALID_TOPIC_NAME');
    expect(await rejectedCode(broker.createTopic('x'.repeat(250)))).toBe('INVALID_TOPIC_NAME');
    expect(await rejectedCode(broker.createTopic('t', { partitions: 0 }))).toBe('INVALID_ARGUMENT');
    expect(await rejectedCode(broker.createTopic('t', { partitions: partitionCountMax + 1 }))).toBe(
      'INVALID_ARGUMENT',
    );
    expect(await rejectedCode(broker.createTopic('t', { segmentBytes: 10 }))).toBe('INVALID_ARGUMENT');
    expect(await rejectedCode(broker.createTopic('t', { durability: 'maybe' as 'none' }))).toBe(
      'INVALID_ARGUMENT',
    );
    await expect(broker.createTopic('d', { dedupWindowMs: 5000 })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: 'topic config dedupWindowMs must be 0: msg-id dedup arrives in a later version, got 5000',
    });
    expect(broker.listTopics().map((topic) => topic.name)).not.toContain('d');
    await broker.createTopic('t');
    expect(await rejectedCode(broker.createTopic('t'))).toBe('TOPIC_EXISTS');
    // Concurrent creations of one name: exactly one wins.
    const outcomes = await Promise.allSettled([broker.createTopic('race'), broker.createTopic('race')]);
    expect(outcomes.map((outcome) => outcome.status).sort()).toEqual(['fulfilled', 'rejected']);
    expect(await rejectedCode(broker.deleteTopic('nope'))).toBe('UNKNOWN_TOPIC');
    expect(await rejectedCode(broker.addPartitions('nope', 1))).toBe('UNKNOWN_TOPIC');
    expect(await rejectedCode(broker.addPartitions('t', 0))).toBe('INVALID_ARGUMENT');
    expect(await rejectedCode(broker.addPartitions('t', partitionCountMax))).toBe('INVALID_ARGUMENT');
    expect(thrownCode(() => broker.describeTopic('nope'))).toBe('UNKNOWN_TOPIC');
    expect(await rejectedCode(broker.produce('nope', 0, batchOf('a')))).toBe('UNKNOWN_TOPIC');
    expect(await rejectedCode(broker.produce('t', 1, batchOf('a')))).toBe('UNKNOWN_PARTITION');
    expect(await rejectedCode(broker.produce('t', -1, batchOf('a')))).toBe('UNKNOWN_PARTITION');
    expect(await rejectedCode(broker.produce('t', 0.5, batchOf('a')))).toBe('INVALID_ARGUMENT');
    expect(await rejectedCode(broker.fetch('nope', 0, 0, fetchAll))).toBe('UNKNOWN_TOPIC');
    expect(await rejectedCode(broker.fetch('t', 7, 0, fetchAll))).toBe('UNKNOWN_PARTITION');
    expect(thrownCode(() => broker.listOffset('nope', 0, 'latest'))).toBe('UNKNOWN_TOPIC');
    expect(thrownCode(() => broker.listOffset('t', 3, 'latest'))).toBe('UNKNOWN_PARTITION');
  });

  it('keeps topics, configs and data across close and reopen', async () => {
    const dataDir = temporaryDirectory();
    let broker = await Broker.open({ dataDir, segmentBytes: 64 * 1024, durability: 'interval' });
    await broker.createTopic('orders', {
      partitions: 2,
      durability: 'always',
      retentionBytes: 1 << 20,
      dedupWindowMs: 0,
    });
    await broker.createTopic('logs', { durability: 'none', flushIntervalMs: 50 });
    for (let i = 0; i < 20; i++) await broker.produce('orders', i % 2, batchOf(`o${i}`, 3));
    await broker.produce('logs', 0, batchOf('l', 5));
    // After a clean close everything is on disk: durableOffset catches up with logEndOffset.
    const before = broker.listTopics().map((topic) => ({
      ...topic,
      partitions: topic.partitions.map((partition) => ({
        ...partition,
        durableOffset: partition.logEndOffset,
      })),
    }));
    await broker.close();
    expect(broker.closed).toBe(true);

    broker = await Broker.open({ dataDir, durability: 'interval' });
    try {
      expect(broker.listTopics()).toEqual(before);
      expect(broker.openReport).toMatchObject({
        topicCount: 2,
        partitionCount: 3,
        orphanTopicDirectories: [],
        missingPartitionDirectories: [],
        warnings: [],
      });
      expect(broker.openReport.partitions.every((partition) => partition.recovery.cleanShutdown)).toBe(true);
      expect(await readAll(broker, 'orders', 0)).toEqual(
        Array.from({ length: 10 }, (_, i) => [`o${2 * i}/0`, `o${2 * i}/1`, `o${2 * i}/2`]).flat(),
      );
      expect(await readAll(broker, 'orders', 1)).toHaveLength(30);
      expect(await readAll(broker, 'logs', 0)).toHaveLength(5);
      // Appends continue where the log ended.
      expect(await broker.produce('orders', 1, batchOf('new'))).toMatchObject({
        baseOffset: 30,
        durability: 'always',
      });
    } finally {
      await broker.close();
    }
  });

  it('adds partitions online while producing, leaving existing partitions untouched', async () => {
    const dataDir = temporaryDirectory();
    const broker = await openBroker(dataDir);
    await broker.createTopic('grow', { partitions: 2 });
    let stop = false;
    let produced = 0;
    const producing = (async () => {
      while (!stop) {
        await broker.produce('grow', produced % 2, batchOf(`p${produced}`));
        produced++;
        await new Promise((resolve) => setImmediate(resolve));
      }
    })();
    await new Promise((resolve) => setTimeout(resolve, 20));
    const grown = await broker.addPartitions('grow', 3);
    expect(grown.partitionCount).toBe(5);
    expect(grown.config.partitions).toBe(5);
    expect(grown.partitions.slice(2).map((partition) => partition.logEndOffset)).toEqual([0, 0, 0]);
    expect(await broker.produce('grow', 4, batchOf('four'))).toMatchObject({ partition: 4, baseOffset: 0 });
    await new Promise((resolve) => setTimeout(resolve, 20));
    stop = true;
    await producing;
    const ends = broker.describeTopic('grow').partitions.map((partition) => partition.logEndOffset);
    expect(ends[0]! + ends[1]!).toBe(produced);
    const even = await readAll(broker, 'grow', 0);
    expect(even).toEqual(Array.from({ length: ends[0]! }, (_, i) => `p${2 * i}/0`));
    await broker.close();
    const reopened = await openBroker(dataDir);
    expect(reopened.describeTopic('grow').partitionCount).toBe(5);
    expect(valuesOf((await reopened.fetch('grow', 4, 0, fetchAll)).records)).toEqual(['four/0']);
  });

  it('deletes a topic with its data; the name can be reused, also after reopen', async () => {
    const dataDir = temporaryDirectory();
    let broker = await openBroker(dataDir);
    await broker.createTopic('temp', { partitions: 2 });
    await broker.produce('temp', 0, batchOf('old', 4));
    await broker.deleteTopic('temp');
    expect(readdirSync(join(dataDir, 'topics'))).toEqual([]);
    const again = await broker.createTopic('temp', { partitions: 1 });
    expect(again.partitions[0]!.logEndOffset).toBe(0);
    expect((await broker.fetch('temp', 0, 0, fetchAll)).records.length).toBe(0);
    await broker.produce('temp', 0, batchOf('new'));
    await broker.close();
    broker = await openBroker(dataDir);
    expect(broker.describeTopic('temp').partitionCount).toBe(1);
    expect(valuesOf((await broker.fetch('temp', 0, 0, fetchAll)).records)).toEqual(['new/0']);
  });

  it('completes deletions and reports directory problems a crash (or a person) left behind', async () => {
    const dataDir = temporaryDirectory();
    let broker = await openBroker(dataDir);
    await broker.createTopic('gone', { partitions: 1 });
    await broker.createTopic('kept', { partitions: 3 });
    await broker.createTopic('reborn', { partitions: 1 });
    await broker.produce('kept', 0, batchOf('k'));
    await broker.close();
    const topics = join(dataDir, 'topics');
    // A deletion interrupted after the rename, before the metadata was rewritten.
    await import('node:fs').then((fs) =>
      fs.renameSync(join(topics, 'gone'), join(topics, 'gone.deleted-123')),
    );
    // A leftover of an old incarnation of a topic that exists again.
    mkdirSync(join(topics, 'reborn.deleted-99', '0'), { recursive: true });
    // An orphan directory (a crash during createTopic), a missing partition, a stray partition.
    mkdirSync(join(topics, 'orphan', '0'), { recursive: true });
    writeFileSync(join(topics, 'orphan', '0', 'keep-me'), 'data');
    rmSync(join(topics, 'kept', '2'), { recursive: true });
    mkdirSync(join(topics, 'kept', '7'));

    broker = await openBroker(dataDir);
    const report = broker.openReport;
    expect(broker.listTopics().map((topic) => topic.name)).toEqual(['kept', 'reborn']);
    expect(report.completedDeletions.sort()).toEqual(['gone.deleted-123', 'reborn.deleted-99']);
    expect(report.orphanTopicDirectories).toEqual([join(topics, 'orphan')]);
    expect(report.missingPartitionDirectories).toEqual([join(topics, 'kept', '2')]);
    expect(report.strayPartitionDirectories).toHaveLength(1);
    expect(report.strayPartitionDirectories[0]!.from).toBe(join(topics, 'kept', '7'));
    expect(report.warnings.length).toBeGreaterThanOrEqual(5);
    expect(existsSync(join(topics, 'gone.deleted-123'))).toBe(false);
    expect(existsSync(join(topics, 'orphan', '0', 'keep-me'))).toBe(true);
    expect(broker.describeTopic('kept').partitions.map((partition) => partition.logEndOffset)).toEqual([
      1, 0, 0,
    ]);
    // Creating a topic over an orphan directory moves the orphan aside, keeping its content.
    await broker.createTopic('orphan');
    const aside = readdirSync(topics).filter((name) => name.startsWith('orphan.orphan-'));
    expect(aside).toHaveLength(1);
    expect(existsSync(join(topics, aside[0]!, '0', 'keep-me'))).toBe(true);
    await broker.close();
    // The deletion was recorded: the next open finds nothing to repair.
    broker = await openBroker(dataDir);
    expect(broker.openReport.completedDeletions).toEqual([]);
    expect(broker.openReport.missingPartitionDirectories).toEqual([]);
    expect(broker.listTopics().map((topic) => topic.name)).toEqual(['kept', 'orphan', 'reborn']);
  });

  it('refuses to open over damaged metadata (CORRUPT_LOG) and a data directory already open', async () => {
    const dataDir = temporaryDirectory();
    const broker = await openBroker(dataDir);
    expect(await rejectedCode(Broker.open({ dataDir }))).toBe('INVALID_ARGUMENT');
    await broker.createTopic('t');
    await broker.close();
    writeFileSync(join(dataDir, 'metadata.json'), '{"version":1,"topics":{}}\n00000000\n');
    expect(await rejectedCode(Broker.open({ dataDir }))).toBe('CORRUPT_LOG');
    expect(
      await rejectedCode(Broker.open({ dataDir: temporaryDirectory(), durability: 'fast' as 'none' })),
    ).toBe('INVALID_ARGUMENT');
  });

  it('refuses a non-zero dedupWindowMs broker default; 0 is accepted', async () => {
    await expect(Broker.open({ dataDir: temporaryDirectory(), dedupWindowMs: 60_000 })).rejects.toMatchObject(
      {
        code: 'INVALID_ARGUMENT',
        message: 'broker option dedupWindowMs must be 0: msg-id dedup arrives in a later version, got 60000',
      },
    );
    const broker = await openBroker(temporaryDirectory(), { dedupWindowMs: 0 });
    expect((await broker.createTopic('t')).config.dedupWindowMs).toBe(0);
    expect((await broker.createTopic('u', { dedupWindowMs: 0 })).config.dedupWindowMs).toBe(0);
  });

  it('opens metadata of an older version holding a non-zero dedupWindowMs: reset to 0, warned once', async () => {
    const dataDir = temporaryDirectory();
    let broker = await openBroker(dataDir);
    await broker.createTopic('old', { partitions: 2 });
    await broker.produce('old', 1, batchOf('kept', 2));
    await broker.close();
    // What an older version (which stored the window without acting on it) left in metadata.json.
    const file = new CheckpointFile<{ topics: Record<string, { config: Record<string, unknown> }> }>(
      join(dataDir, metadataFileName),
    );
    const read = file.read();
    if (read.status !== 'ok') throw new Error(`metadata unreadable: ${read.status}`);
    read.value.topics['old']!.config['dedupWindowMs'] = 60_000;
    file.writeSync(read.value);

    broker = await openBroker(dataDir);
    expect(broker.openReport.warnings).toEqual([
      "topic 'old': stored dedupWindowMs 60000 reset to 0 (msg-id dedup was never in effect; it arrives in a later version)",
    ]);
    expect(broker.describeTopic('old')).toMatchObject({ partitionCount: 2, config: { dedupWindowMs: 0 } });
    expect(await readAll(broker, 'old', 1)).toEqual(['kept/0', 'kept/1']);
    await broker.close();
    const rewritten = file.read();
    expect(rewritten.status === 'ok' && rewritten.value.topics['old']!.config['dedupWindowMs']).toBe(0);

    broker = await openBroker(dataDir);
    expect(broker.openReport.warnings).toEqual([]);
    await broker.close();

    // Out of the range older versions accepted: still invalid metadata.
    read.value.topics['old']!.config['dedupWindowMs'] = -5;
    file.writeSync(read.value);
    expect(await rejectedCode(Broker.open({ dataDir }))).toBe('CORRUPT_LOG');
  });
});
