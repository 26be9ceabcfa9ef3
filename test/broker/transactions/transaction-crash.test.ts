/**
 * Transactions killed with SIGKILL in the middle of commits (transaction-crash-child.ts), many rounds
 * in one data directory. After each restart a consumer reading every partition of both target topics
 * sees each transaction entirely or not at all, never a message twice; every acknowledged commit is
 * entirely there and every rollback entirely absent.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureBuilt, repositoryRoot, runUntilKilled, seededRandom } from '../../kill-runner.js';

const childScript = join(repositoryRoot, 'dist/test/broker/transactions/transaction-crash-child.js');
const childSource = join(repositoryRoot, 'test/broker/transactions/transaction-crash-child.ts');
const rounds = 12;
const seed = 120612;

type Line =
  | { opened: { counts: Record<string, number>; duplicates: string[] } }
  | { deciding: number; decision: 'commit' | 'rollback' }
  | { committed: number }
  | { rolledBack: number };

let directory = '';
beforeAll(() => {
  ensureBuilt(childScript, childSource);
  directory = mkdtempSync(join(tmpdir(), 'spillway-transaction-crash-'));
}, 120_000);
afterAll(() => rmSync(directory, { recursive: true, force: true }));

const size = (n: number): number => 1 + (n % 6);

describe('transactions killed with SIGKILL during commits', () => {
  it(`all or nothing per transaction over ${rounds} kills (seed ${seed})`, async () => {
    const random = seededRandom(seed);
    const committed = new Set<number>();
    const rolledBack = new Set<number>();
    /** Commits decided but not acknowledged when killed: all or nothing, and stable from then on. */
    const inDoubt = new Map<number, number | null>();
    let interruptedCommits = 0;
    for (let round = 0; round <= rounds; round++) {
      const first = round * 1_000_000;
      const run = await runUntilKilled<Line>({
        script: childScript,
        args: [directory, String(first)],
        isAck: (line) => 'committed' in line,
        killDelayMs: 50 + Math.floor(random() * 300),
        firstAckTimeoutMs: 30_000,
      });
      const opened = run.lines.find((line): line is Extract<Line, { opened: unknown }> => 'opened' in line);
      expect(opened, `round ${round}: the broker did not open: ${run.stderr}`).toBeDefined();
      const { counts, duplicates } = opened!.opened;
      expect(duplicates, `round ${round}: messages seen twice`).toEqual([]);
      for (const [text, count] of Object.entries(counts)) {
        const n = Number(text);
        expect(
          [0, size(n)],
          `round ${round}: transaction ${n} is partly visible (${count} of ${size(n)})`,
        ).toContain(count);
        expect(rolledBack.has(n), `round ${round}: rolled-back transaction ${n} is visible`).toBe(false);
      }
      for (const n of committed) expect(counts[n], `round ${round}: committed ${n}`).toBe(size(n));
      for (const [n, before] of inDoubt) {
        const now = counts[n] ?? 0;
        if (before !== null) expect(now, `round ${round}: in-doubt ${n} changed`).toBe(before);
        inDoubt.set(n, now);
      }
      const decided = new Map<number, 'commit' | 'rollback'>();
      for (const line of run.lines) {
        if ('deciding' in line) decided.set(line.deciding, line.decision);
        else if ('committed' in line) committed.add(line.committed);
        else if ('rolledBack' in line) rolledBack.add(line.rolledBack);
      }
      for (const [n, decision] of decided) {
        if (decision === 'commit' && !committed.has(n)) {
          inDoubt.set(n, null);
          interruptedCommits++;
        }
      }
      if (round < rounds) expect(run.signal, `round ${round}: ${run.stderr}`).toBe('SIGKILL');
    }
    expect(committed.size).toBeGreaterThan(rounds * 10);
    // Kills landed between a commit's decision and its acknowledgement.
    expect(interruptedCommits).toBeGreaterThan(rounds);
  }, 300_000);
});
