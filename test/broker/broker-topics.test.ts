import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { legacyMetadataFileName } from '../../src/broker/metadata-store.js';
import { ManualClock } from '../../src/clock.js';
import { decodeRecords } from '../../src/format/record-batch.js';
import { partitionCountMax } from '../../src/limits.js';
import { Broker } from '../../src/spillway-broker.js';
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
    const created = await broker.topics.create('orders', {
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
    await broker.topics.create('audit');
    expect(
      broker.topics.list().map((topic) => [topic.name, topic.partitionCount, topic.config.durability]),
    ).toEqual([
      ['audit', 1, 'none'],
      ['orders', 3, 'always'],
    ]);
    await broker.messages.produce('orders', 1, batchOf('a', 2));
    expect(broker.topics.describe('orders').partitions[1]).toMatchObject({
      logEndOffset: 2,
      durableOffset: 2,
    });
    await broker.topics.delete('orders');
    expect(broker.topics.list().map((topic) => topic.name)).toEqual(['audit']);
    expect(thrownCode(() => broker.topics.describe('orders'))).toBe('UNKNOWN_TOPIC');
  });

  it('serves __metadata as a read-only internal topic: hidden from list, described, fetched, woken', async () => {
    const broker = await openBroker(temporaryDirectory(), { clock: new ManualClock() });
    expect(broker.topics.list()).toEqual([]);
    expect(broker.topics.list({ internal: true }).map((topic) => topic.name)).toEqual([
      '__consumer_offsets',
      '__dedup',
      '__delay',
      '__delay_dead',
      '__delay_state',
      '__metadata',
      '__producer_state',
      '__queue_state',
      '__transactions',
      '__txn_half',
    ]);
    expect(broker.topics.describe('__metadata')).toMatchObject({
      name: '__metadata',
      partitionCount: 1,
      config: { durability: 'always', retentionMs: -1 },
    });
    const end = broker.messages.listOffset('__metadata', 0, 'latest');
    // A long-poll on the metadata log wakes when a topic is created.
    // On a ManualClock the long-poll never times out: only the append can answer it.
    const waiting = broker.messages.fetch('__metadata', 0, end, { maxBytes: 1 << 20, maxWaitMs: 20_000 });
    await broker.topics.create('orders', { partitions: 2 });
    const fetched = await waiting;
    expect(fetched.batchCount).toBe(1);
    const [entry] = [...decodeRecords(fetched.records)];
    expect(Buffer.from(entry!.key!).toString()).toBe('orders');
    expect(await rejectedCode(broker.messages.produce('__metadata', 0, batchOf('x')))).toBe(
      'INVALID_ARGUMENT',
    );
    expect(await rejectedCode(broker.topics.delete('__metadata'))).toBe('INVALID_ARGUMENT');
    expect(await rejectedCode(broker.topics.addPartitions('__metadata', 1))).toBe('INVALID_ARGUMENT');
    expect(await rejectedCode(broker.topics.create('__metadata'))).toBe('INVALID_TOPIC_NAME');
    expect(await rejectedCode(broker.topics.create('orders.deleted-5'))).toBe('INVALID_TOPIC_NAME');
    expect(() => broker.topics.list({ internal: 'yes' as unknown as boolean })).toThrow(
      expect.objectContaining({ code: 'INVALID_ARGUMENT' }),
    );
  });

  it('rejects bad names, bad configs, duplicates and unknown topics with their codes', async () => {
    const broker = await openBroker(temporaryDirectory());
    expect(await rejectedCode(broker.topics.create('..'))).toBe('INVALID_TOPIC_NAME');
    expect(await rejectedCode(broker.topics.create('a/b'))).toBe('INVALID_TOPIC_NAME');
    expect(await rejectedCode(broker.topics.create('x'.repeat(250)))).toBe('INVALID_TOPIC_NAME');
    expect(await rejectedCode(broker.topics.create('t', { partitions: 0 }))).toBe('INVALID_ARGUMENT');
    expect(await rejectedCode(broker.topics.create('t', { partitions: partitionCountMax + 1 }))).toBe(
      'INVALID_ARGUMENT',
    );
    expect(await rejectedCode(broker.topics.create('t', { segmentBytes: 10 }))).toBe('INVALID_ARGUMENT');
    expect(await rejectedCode(broker.topics.create('t', { durability: 'maybe' as 'none' }))).toBe(
      'INVALID_ARGUMENT',
    );
    await expect(broker.topics.create('d', { dedupWindowMs: -5 })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: 'topic config dedupWindowMs must be an integer in [0, 604800000] (0: disabled), got -5',
    });
    expect(broker.topics.list().map((topic) => topic.name)).not.toContain('d');
    await broker.topics.create('t');
    expect(await rejectedCode(broker.topics.create('t'))).toBe('TOPIC_EXISTS');
    // Concurrent creations of one name: exactly one wins.
    const outcomes = await Promise.allSettled([broker.topics.create('race'), broker.topics.create('race')]);
    expect(outcomes.map((outcome) => outcome.status).sort()).toEqual(['fulfilled', 'rejected']);
    expect(await rejectedCode(broker.topics.delete('nope'))).toBe('UNKNOWN_TOPIC');
    expect(await rejectedCode(broker.topics.addPartitions('nope', 1))).toBe('UNKNOWN_TOPIC');
    expect(await rejectedCode(broker.topics.addPartitions('t', 0))).toBe('INVALID_ARGUMENT');
    expect(await rejectedCode(broker.topics.addPartitions('t', partitionCountMax))).toBe('INVALID_ARGUMENT');
    expect(thrownCode(() => broker.topics.describe('nope'))).toBe('UNKNOWN_TOPIC');
    expect(await rejectedCode(broker.messages.produce('nope', 0, batchOf('a')))).toBe('UNKNOWN_TOPIC');
    expect(await rejectedCode(broker.messages.produce('t', 1, batchOf('a')))).toBe('UNKNOWN_PARTITION');
    expect(await rejectedCode(broker.messages.produce('t', -1, batchOf('a')))).toBe('UNKNOWN_PARTITION');
    expect(await rejectedCode(broker.messages.produce('t', 0.5, batchOf('a')))).toBe('INVALID_ARGUMENT');
    expect(await rejectedCode(broker.messages.fetch('nope', 0, 0, fetchAll))).toBe('UNKNOWN_TOPIC');
    expect(await rejectedCode(broker.messages.fetch('t', 7, 0, fetchAll))).toBe('UNKNOWN_PARTITION');
    expect(thrownCode(() => broker.messages.listOffset('nope', 0, 'latest'))).toBe('UNKNOWN_TOPIC');
    expect(thrownCode(() => broker.messages.listOffset('t', 3, 'latest'))).toBe('UNKNOWN_PARTITION');
  });

  it('keeps topics, configs and data across close and reopen', async () => {
    const dataDir = temporaryDirectory();
    let broker = await Broker.open({ dataDir, segmentBytes: 64 * 1024, durability: 'interval' });
    await broker.topics.create('orders', {
      partitions: 2,
      durability: 'always',
      retentionBytes: 1 << 20,
      dedupWindowMs: 0,
    });
    await broker.topics.create('logs', { durability: 'none', flushIntervalMs: 50 });
    for (let i = 0; i < 20; i++) await broker.messages.produce('orders', i % 2, batchOf(`o${i}`, 3));
    await broker.messages.produce('logs', 0, batchOf('l', 5));
    // After a clean close everything is on disk: durableOffset catches up with logEndOffset.
    const before = broker.topics.list().map((topic) => ({
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
      expect(broker.topics.list()).toEqual(before);
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
      expect(await broker.messages.produce('orders', 1, batchOf('new'))).toMatchObject({
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
    await broker.topics.create('grow', { partitions: 2 });
    let stop = false;
    let produced = 0;
    const producing = (async () => {
      while (!stop) {
        await broker.messages.produce('grow', produced % 2, batchOf(`p${produced}`));
        produced++;
        await new Promise((resolve) => setImmediate(resolve));
      }
    })();
    await new Promise((resolve) => setTimeout(resolve, 20));
    const grown = await broker.topics.addPartitions('grow', 3);
    expect(grown.partitionCount).toBe(5);
    expect(grown.config.partitions).toBe(5);
    expect(grown.partitions.slice(2).map((partition) => partition.logEndOffset)).toEqual([0, 0, 0]);
    expect(await broker.messages.produce('grow', 4, batchOf('four'))).toMatchObject({
      partition: 4,
      baseOffset: 0,
    });
    await new Promise((resolve) => setTimeout(resolve, 20));
    stop = true;
    await producing;
    const ends = broker.topics.describe('grow').partitions.map((partition) => partition.logEndOffset);
    expect(ends[0]! + ends[1]!).toBe(produced);
    const even = await readAll(broker, 'grow', 0);
    expect(even).toEqual(Array.from({ length: ends[0]! }, (_, i) => `p${2 * i}/0`));
    await broker.close();
    const reopened = await openBroker(dataDir);
    expect(reopened.topics.describe('grow').partitionCount).toBe(5);
    expect(valuesOf((await reopened.messages.fetch('grow', 4, 0, fetchAll)).records)).toEqual(['four/0']);
  });

  it('deletes a topic with its data; the name can be reused, also after reopen', async () => {
    const dataDir = temporaryDirectory();
    let broker = await openBroker(dataDir);
    await broker.topics.create('temp', { partitions: 2 });
    await broker.messages.produce('temp', 0, batchOf('old', 4));
    await broker.topics.delete('temp');
    expect(readdirSync(join(dataDir, 'topics')).sort()).toEqual([
      '__consumer_offsets',
      '__dedup',
      '__delay',
      '__delay_dead',
      '__delay_state',
      '__metadata',
      '__producer_state',
      '__queue_state',
      '__transactions',
      '__txn_half',
    ]);
    const again = await broker.topics.create('temp', { partitions: 1 });
    expect(again.partitions[0]!.logEndOffset).toBe(0);
    expect((await broker.messages.fetch('temp', 0, 0, fetchAll)).records.length).toBe(0);
    await broker.messages.produce('temp', 0, batchOf('new'));
    await broker.close();
    broker = await openBroker(dataDir);
    expect(broker.topics.describe('temp').partitionCount).toBe(1);
    expect(valuesOf((await broker.messages.fetch('temp', 0, 0, fetchAll)).records)).toEqual(['new/0']);
  });

  it('completes deletions and reports directory problems a crash (or a person) left behind', async () => {
    const dataDir = temporaryDirectory();
    let broker = await openBroker(dataDir);
    await broker.topics.create('gone', { partitions: 1 });
    await broker.topics.create('kept', { partitions: 3 });
    await broker.topics.create('reborn', { partitions: 1 });
    await broker.messages.produce('kept', 0, batchOf('k'));
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
    expect(broker.topics.list().map((topic) => topic.name)).toEqual(['kept', 'reborn']);
    expect(report.completedDeletions.sort()).toEqual(['gone.deleted-123', 'reborn.deleted-99']);
    expect(report.orphanTopicDirectories).toEqual([join(topics, 'orphan')]);
    expect(report.missingPartitionDirectories).toEqual([join(topics, 'kept', '2')]);
    expect(report.strayPartitionDirectories).toHaveLength(1);
    expect(report.strayPartitionDirectories[0]!.from).toBe(join(topics, 'kept', '7'));
    expect(report.warnings.length).toBeGreaterThanOrEqual(5);
    expect(existsSync(join(topics, 'gone.deleted-123'))).toBe(false);
    expect(existsSync(join(topics, 'orphan', '0', 'keep-me'))).toBe(true);
    expect(broker.topics.describe('kept').partitions.map((partition) => partition.logEndOffset)).toEqual([
      1, 0, 0,
    ]);
    // The missing partition is stopped, not recreated: requests to it fail, the others serve.
    expect(broker.topics.describe('kept').partitions[2]!.damaged).toMatch(
      /partition directory .* is missing/,
    );
    expect(existsSync(join(topics, 'kept', '2'))).toBe(false);
    expect(report.damagedPartitions).toMatchObject([
      { topic: 'kept', partition: 2, kind: 'missing-directory' },
    ]);
    expect(await rejectedCode(broker.messages.produce('kept', 2, batchOf('x')))).toBe('PARTITION_DAMAGED');
    expect(broker.integrity.report().status).toBe('degraded');
    // An explicit repair starts it again, empty.
    const repaired = await broker.integrity.repair('kept', 2);
    expect(repaired).toMatchObject({
      recreatedEmpty: true,
      setAside: [],
      logStartOffset: 0,
      logEndOffset: 0,
    });
    expect(broker.integrity.report().status).toBe('ok');
    expect((await broker.messages.produce('kept', 2, batchOf('x'))).baseOffset).toBe(0);
    expect(await rejectedCode(broker.integrity.repair('kept', 2))).toBe('INVALID_ARGUMENT');
    // Creating a topic over an orphan directory moves the orphan aside, keeping its content.
    await broker.topics.create('orphan');
    const aside = readdirSync(topics).filter((name) => name.startsWith('orphan.orphan-'));
    expect(aside).toHaveLength(1);
    expect(existsSync(join(topics, aside[0]!, '0', 'keep-me'))).toBe(true);
    await broker.close();
    // The deletion was recorded: the next open finds nothing to repair.
    broker = await openBroker(dataDir);
    expect(broker.openReport.completedDeletions).toEqual([]);
    expect(broker.openReport.missingPartitionDirectories).toEqual([]);
    expect(broker.topics.list().map((topic) => topic.name)).toEqual(['kept', 'orphan', 'reborn']);
    // What was set aside (the orphan, the stray partition) is listed at every start with the command
    // that removes it; running those commands leaves nothing to report.
    const leftovers = broker.openReport.findings.filter((finding) => finding.fix.includes('rm -rf'));
    expect(leftovers.map((finding) => finding.what)).toEqual([
      expect.stringMatching(/orphan\.orphan-\d+ is not in the metadata \(set aside by a topic creation/),
      expect.stringMatching(/kept\/7\.stray-\d+ was set aside by an unfinished addPartitions/),
    ]);
    await broker.close();
    for (const finding of leftovers) {
      execFileSync('sh', ['-c', /rm -rf -- '[^']+'/.exec(finding.fix)![0]]);
    }
    broker = await openBroker(dataDir);
    expect(broker.openReport.findings.filter((finding) => finding.fix.includes('rm -rf'))).toEqual([]);
    expect(broker.topics.list().map((topic) => topic.name)).toEqual(['kept', 'orphan', 'reborn']);
  });

  it('refuses to open over damaged metadata (CORRUPT_LOG) and a data directory already open', async () => {
    const dataDir = temporaryDirectory();
    const broker = await openBroker(dataDir);
    expect(await rejectedCode(Broker.open({ dataDir }))).toBe('INVALID_ARGUMENT');
    await broker.topics.create('t');
    await broker.close();
    // The metadata log's last entry (topic 't') damaged: no snapshot after it, so nothing can stand in.
    const segment = join(dataDir, 'topics', '__metadata', '0', '00000000000000000000.log');
    const bytes = readFileSync(segment);
    bytes[bytes.length - 3] = bytes[bytes.length - 3]! ^ 0xff;
    writeFileSync(segment, bytes);
    expect(await rejectedCode(Broker.open({ dataDir }))).toBe('CORRUPT_LOG');
    // A damaged metadata.json of an earlier version, to be migrated: refused too.
    const legacyDir = temporaryDirectory();
    writeFileSync(join(legacyDir, 'metadata.json'), '{"version":1,"topics":{}}\n00000000\n');
    expect(await rejectedCode(Broker.open({ dataDir: legacyDir }))).toBe('CORRUPT_LOG');
    expect(
      await rejectedCode(Broker.open({ dataDir: temporaryDirectory(), durability: 'fast' as 'none' })),
    ).toBe('INVALID_ARGUMENT');
  });

  it('takes a dedupWindowMs broker default within [0, 7 days]; a topic may override it', async () => {
    await expect(
      Broker.open({ dataDir: temporaryDirectory(), dedupWindowMs: 604_800_001 }),
    ).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message:
        'broker option dedupWindowMs must be an integer in [0, 604800000] (0: disabled), got 604800001',
    });
    const broker = await openBroker(temporaryDirectory(), { dedupWindowMs: 60_000 });
    expect((await broker.topics.create('t')).config.dedupWindowMs).toBe(60_000);
    expect((await broker.topics.create('u', { dedupWindowMs: 0 })).config.dedupWindowMs).toBe(0);
  });

  it('migrates metadata.json of an earlier version into the __metadata state log, once', async () => {
    const dataDir = temporaryDirectory();
    let broker = await openBroker(dataDir);
    const described = await broker.topics.create('old', { partitions: 2 });
    await broker.topics.create('plain');
    await broker.messages.produce('old', 1, batchOf('kept', 2));
    await broker.close();
    // What an earlier version left: metadata.json (a CheckpointFile) and no metadata log. It stored
    // dedupWindowMs without acting on it.
    rmSync(join(dataDir, 'topics', '__metadata'), { recursive: true });
    const { partitions: _partitions, ...config } = described.config;
    const legacy = {
      version: 1,
      topics: {
        old: {
          partitionCount: 2,
          createdAtMs: described.createdAtMs,
          config: { ...config, dedupWindowMs: 60_000 },
        },
        plain: { partitionCount: 1, createdAtMs: described.createdAtMs, config },
      },
    };
    const file = new CheckpointFile<typeof legacy>(join(dataDir, legacyMetadataFileName));
    file.writeSync(legacy);

    broker = await openBroker(dataDir);
    expect(broker.openReport.warnings).toEqual([
      "warning: topic 'old': stored dedupWindowMs 60000 reset to 0 (the version that wrote metadata.json never acted on it)",
      `info: migrated 2 topic(s) from ${join(dataDir, legacyMetadataFileName)} into the __metadata state log; the file is kept as metadata.json.migrated`,
    ]);
    expect(broker.topics.describe('old')).toMatchObject({
      partitionCount: 2,
      createdAtMs: described.createdAtMs,
      config: { ...described.config, dedupWindowMs: 0 },
    });
    expect(await readAll(broker, 'old', 1)).toEqual(['kept/0', 'kept/1']);
    expect(broker.topics.list().map((topic) => topic.name)).toEqual(['old', 'plain']);
    await broker.close();
    expect(existsSync(join(dataDir, legacyMetadataFileName))).toBe(false);
    expect(existsSync(join(dataDir, `${legacyMetadataFileName}.migrated`))).toBe(true);

    // The log is the truth from now on: no migration again, nothing to warn about.
    broker = await openBroker(dataDir);
    expect(broker.openReport.warnings).toEqual([]);
    expect(broker.topics.list().map((topic) => topic.name)).toEqual(['old', 'plain']);
    await broker.close();

    // A metadata.json next to a complete metadata log (the rename after a migration did not happen):
    // the log wins, the file is set aside.
    file.writeSync({ version: 1, topics: {} as typeof legacy.topics });
    broker = await openBroker(dataDir);
    expect(broker.topics.list().map((topic) => topic.name)).toEqual(['old', 'plain']);
    await broker.close();
    expect(existsSync(join(dataDir, legacyMetadataFileName))).toBe(false);

    // Out of the range older versions accepted: invalid metadata, refused.
    const invalidDir = temporaryDirectory();
    new CheckpointFile<typeof legacy>(join(invalidDir, legacyMetadataFileName)).writeSync({
      version: 1,
      topics: { ...legacy.topics, old: { ...legacy.topics.old, config: { ...config, dedupWindowMs: -5 } } },
    });
    expect(await rejectedCode(Broker.open({ dataDir: invalidDir }))).toBe('CORRUPT_LOG');
  });

  it('refuses to open when the metadata log is lost while topic directories exist', async () => {
    const dataDir = temporaryDirectory();
    let broker = await openBroker(dataDir);
    await broker.topics.create('orders', { partitions: 2 });
    await broker.close();
    rmSync(join(dataDir, 'topics', '__metadata'), { recursive: true });
    await expect(Broker.open({ dataDir })).rejects.toMatchObject({
      code: 'CORRUPT_LOG',
      message: expect.stringMatching(/metadata log is missing but 1 topic directory exists \(orders\)/),
    });
    // Nothing was changed: with the topic directory moved away, the broker starts empty.
    expect(readdirSync(join(dataDir, 'topics', 'orders')).sort()).toEqual(['0', '1']);
    rmSync(join(dataDir, 'topics', 'orders'), { recursive: true });
    broker = await openBroker(dataDir);
    expect(broker.topics.list()).toEqual([]);
    await broker.close();
  });
  it('in a cluster, a topic the records hold but not created here is NOT_LEADER; describe stays local', async () => {
    const broker = await openBroker(temporaryDirectory());
    await broker.topics.create('here', { partitions: 1 });
    const records = new Map([
      ['here', 3],
      ['elsewhere', 2],
    ]);
    broker.topics.useClusterRecords((name) => records.get(name));
    // Known to the records, not created here (its assignment not applied yet): retriable.
    expect(thrownCode(() => broker.topics.topicNamed('elsewhere'))).toBe('NOT_LEADER');
    expect(await rejectedCode(broker.messages.produce('elsewhere', 0, batchOf('a', 1)))).toBe('NOT_LEADER');
    expect(await rejectedCode(broker.messages.fetch('elsewhere', 0, 0, fetchAll))).toBe('NOT_LEADER');
    expect(thrownCode(() => broker.messages.listOffset('elsewhere', 1, 'latest'))).toBe('NOT_LEADER');
    // A partition the records hold beyond the local count; one beyond the records' count is unknown.
    expect(thrownCode(() => broker.topics.partitionOf('here', 2))).toBe('NOT_LEADER');
    expect(thrownCode(() => broker.topics.partitionOf('here', 3))).toBe('UNKNOWN_PARTITION');
    // Neither here nor in the records: unknown, as on a single broker.
    expect(thrownCode(() => broker.topics.topicNamed('nowhere'))).toBe('UNKNOWN_TOPIC');
    // Administration and describe answer for the local topics only (the cluster wiring creates them).
    expect(thrownCode(() => broker.topics.describe('elsewhere'))).toBe('UNKNOWN_TOPIC');
    expect(await rejectedCode(broker.topics.delete('elsewhere'))).toBe('UNKNOWN_TOPIC');
    await broker.topics.create('elsewhere', { partitions: 2 });
    expect(broker.topics.partitionOf('elsewhere', 1).index).toBe(1);
    await broker.close();
  });
});
