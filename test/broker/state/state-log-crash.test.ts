/**
 * A state log killed with SIGKILL many times (state-log-crash-child.ts), in one directory: after each
 * kill, the state the next run recovers holds every acknowledged commit (for each acknowledged put of
 * value v to key k, the recovered value of k is at least v: values only grow per key), holds nothing
 * that was never written (at most the highest value issued), and recovery never fails — including
 * kills while a snapshot is written or segments behind it are deleted.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KeyValueState, keyValueCodec, msgpackValues } from '../../../src/broker/state/key-value-state.js';
import { StateLog } from '../../../src/broker/state/state-log.js';
import { PartitionLog } from '../../../src/storage/partition-log.js';
import { ensureBuilt, repositoryRoot, runUntilKilled, seededRandom } from '../../kill-runner.js';

const childScript = join(repositoryRoot, 'dist/test/broker/state/state-log-crash-child.js');
const childSource = join(repositoryRoot, 'test/broker/state/state-log-crash-child.ts');
const rounds = 16;
const seed = 20261206;

type Line =
  | {
      opened: {
        state: Record<string, number>;
        recovery: { snapshotOffset: number | null; logStartOffset: number };
      };
    }
  | { key: string; seq: number };

let directory = '';
beforeAll(() => {
  ensureBuilt(childScript, childSource);
  directory = mkdtempSync(join(tmpdir(), 'spillway-state-crash-'));
}, 120_000);
afterAll(() => rmSync(directory, { recursive: true, force: true }));

describe('StateLog killed with SIGKILL', () => {
  it(`keeps every acknowledged commit over ${rounds} kills (seed ${seed})`, async () => {
    const random = seededRandom(seed);
    /** Highest value acknowledged per key so far, and highest ever issued (acknowledged or not, bounded by acks + window). */
    const acknowledged = new Map<string, number>();
    let snapshotsSeen = 0;
    let startsAboveZero = 0;
    for (let round = 0; round <= rounds; round++) {
      const run = await runUntilKilled<Line>({
        script: childScript,
        args: [directory],
        isAck: (line) => 'key' in line,
        killDelayMs: 20 + Math.floor(random() * 300),
        firstAckTimeoutMs: 20_000,
      });
      const opened = run.lines.find((line): line is Extract<Line, { opened: unknown }> => 'opened' in line);
      expect(opened, `round ${round}: the child did not open: ${run.stderr}`).toBeDefined();
      const state = opened!.opened.state;
      if (opened!.opened.recovery.snapshotOffset !== null) snapshotsSeen++;
      if (opened!.opened.recovery.logStartOffset > 0) startsAboveZero++;
      for (const [key, value] of acknowledged) {
        expect(
          state[key] ?? 0,
          `round ${round}: key ${key} lost an acknowledged value`,
        ).toBeGreaterThanOrEqual(value);
      }
      for (const line of run.lines) {
        if (!('key' in line)) continue;
        acknowledged.set(line.key, Math.max(acknowledged.get(line.key) ?? 0, line.seq));
      }
      if (round < rounds) expect(run.signal, `round ${round}: ${run.stderr}`).toBe('SIGKILL');
    }
    // Recovered in this process too: the same rules, and a clean close.
    const log = await PartitionLog.open({
      directory,
      durability: 'always',
      segmentBytes: 64 * 1024,
      spareSegment: false,
    });
    const machine = new KeyValueState<number>();
    const state = StateLog.open({
      name: 'crash/0',
      log,
      machine,
      codec: keyValueCodec<number>(msgpackValues((value) => value as number)),
    });
    for (const [key, value] of acknowledged) expect(machine.get(key) ?? 0).toBeGreaterThanOrEqual(value);
    for (const [key, value] of machine.view()) {
      const writer = key.split('/')[0]!;
      expect(value, `key ${key}`).toBeLessThanOrEqual((machine.get(writer) ?? 0) + 3);
    }
    await state.close();
    await log.close();
    expect(snapshotsSeen).toBeGreaterThan(rounds / 2);
    expect(startsAboveZero).toBeGreaterThan(0);
  }, 300_000);
});
