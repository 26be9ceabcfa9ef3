/**
 * Topic metadata on its state log, killed with SIGKILL during topic administration
 * (metadata-crash-child.ts), many rounds in one data directory: every acknowledged creation, partition
 * addition and deletion is there after the restart, nothing half-made is served, and the broker always
 * opens (kills also land while the metadata log writes a snapshot or deletes segments behind one).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Broker } from '../../src/spillway-broker.js';
import { ensureBuilt, repositoryRoot, runUntilKilled, seededRandom } from '../kill-runner.js';

const childScript = join(repositoryRoot, 'dist/test/broker/metadata-crash-child.js');
const childSource = join(repositoryRoot, 'test/broker/metadata-crash-child.ts');
const rounds = 10;
const seed = 61206;

type Line =
  | { opened: { topics: Record<string, number>; warnings: string[] } }
  | { created: string; partitions: number }
  | { grown: string; partitions: number }
  | { deleting: string }
  | { deleted: string };

let directory = '';
beforeAll(() => {
  ensureBuilt(childScript, childSource);
  directory = mkdtempSync(join(tmpdir(), 'spillway-metadata-crash-'));
}, 120_000);
afterAll(() => rmSync(directory, { recursive: true, force: true }));

describe('topic metadata killed with SIGKILL', () => {
  it(`keeps every acknowledged topic operation over ${rounds} kills (seed ${seed})`, async () => {
    const random = seededRandom(seed);
    /** What was acknowledged: partition count per topic (null: deleted). */
    const expected = new Map<string, number | null>();
    /** Deletions started: a kill during one may leave the topic or finish deleting it at the restart. */
    const deleting = new Set<string>();
    let next = 0;
    for (let round = 0; round <= rounds; round++) {
      const run = await runUntilKilled<Line>({
        script: childScript,
        args: [directory, String(next)],
        isAck: (line) => !('opened' in line) && !('deleting' in line),
        killDelayMs: 30 + Math.floor(random() * 250),
        firstAckTimeoutMs: 20_000,
      });
      const opened = run.lines.find((line): line is Extract<Line, { opened: unknown }> => 'opened' in line);
      expect(opened, `round ${round}: the broker did not open: ${run.stderr}`).toBeDefined();
      const topics = opened!.opened.topics;
      for (const [name, partitions] of expected) {
        if (partitions === null) expect(topics[name], `round ${round}: ${name} was deleted`).toBeUndefined();
        // A later, unacknowledged addPartitions may have landed: at least the acknowledged count.
        else if (!(deleting.has(name) && topics[name] === undefined)) {
          expect(topics[name] ?? -1, `round ${round}: ${name}`).toBeGreaterThanOrEqual(partitions);
        }
      }
      for (const line of run.lines) {
        if ('created' in line) expected.set(line.created, line.partitions);
        else if ('grown' in line) expected.set(line.grown, line.partitions);
        else if ('deleting' in line) deleting.add(line.deleting);
        else if ('deleted' in line) expected.set(line.deleted, null);
      }
      // Names are never reused: the next run starts after every name this one may have tried.
      next += run.lines.length + 2;
      if (round < rounds) expect(run.signal, `round ${round}: ${run.stderr}`).toBe('SIGKILL');
    }
    // Every topic the metadata holds is served with all its partitions, in this process too.
    const broker = await Broker.open({
      dataDir: directory,
      stateLog: { segmentBytes: 64 * 1024, snapshotBytesMin: 1024 },
    });
    try {
      for (const topic of broker.topics.list()) {
        for (let partition = 0; partition < topic.partitionCount; partition++) {
          expect(broker.messages.listOffset(topic.name, partition, 'latest')).toBe(0);
        }
      }
      // Snapshots were written along the way: recovery started from one.
      expect(broker.openReport.stateLogs[0]!.recovery.snapshotOffset).not.toBeNull();
    } finally {
      await broker.close();
    }
  }, 300_000);
});
