/**
 * Delayed messages inside transactions, with the broker killed by SIGKILL at random moments
 * (delay-transaction-crash-child.ts): after the decision, during the delivery (scheduling into
 * `__delay`), after it. Each restart waits until nothing delayed is pending, then a consumer reads
 * every partition: each transaction is entirely there (its plain and its two delayed messages) or
 * not at all, never a message twice; every acknowledged commit is entirely there, every rollback
 * absent; a `delayMs` message is due `delayMs` after the commit decision (not after the send), a
 * `deliverAt` one exactly at its time, and none fired before it was due.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureBuilt, repositoryRoot, runUntilKilled, seededRandom } from '../../kill-runner.js';

const childScript = join(repositoryRoot, 'dist/test/broker/delay/delay-transaction-crash-child.js');
const childSource = join(repositoryRoot, 'test/broker/delay/delay-transaction-crash-child.ts');
const rounds = 10;
const seed = 120_613;

type Line =
  | { opened: { messages: Array<[string, number, number]>; pending: number } }
  | { deciding: number; decision: 'commit' | 'rollback'; atMs: number }
  | { committed: number; atMs: number }
  | { rolledBack: number };

let directory = '';
beforeAll(() => {
  ensureBuilt(childScript, childSource);
  directory = mkdtempSync(join(tmpdir(), 'spillway-delay-txn-crash-'));
}, 120_000);
afterAll(() => rmSync(directory, { recursive: true, force: true }));

describe('delayed messages in transactions, SIGKILLed around commits', () => {
  it(`each transaction whole or absent, delays from the commit, over ${rounds} kills (seed ${seed})`, async () => {
    const random = seededRandom(seed);
    const committed = new Map<number, number>();
    const decidingAt = new Map<number, number>();
    const rolledBack = new Set<number>();
    const inDoubt = new Map<number, number | null>();
    let interruptedCommits = 0;
    let delayedChecked = 0;
    for (let round = 0; round <= rounds; round++) {
      const run = await runUntilKilled<Line>({
        script: childScript,
        args: [directory, String(round * 1_000_000)],
        isAck: (line) => 'committed' in line,
        killDelayMs: 50 + Math.floor(random() * 400),
        firstAckTimeoutMs: 30_000,
      });
      const opened = run.lines.find((line): line is Extract<Line, { opened: unknown }> => 'opened' in line);
      expect(opened, `round ${round}: the broker did not open: ${run.stderr}`).toBeDefined();
      expect(opened!.opened.pending, `round ${round}: still pending at open`).toBe(0);
      const counts = new Map<number, number>();
      const seen = new Set<string>();
      for (const [value, due, firedAt] of opened!.opened.messages) {
        expect(seen.has(value), `round ${round}: ${value} seen twice`).toBe(false);
        seen.add(value);
        const [nText, kind, argument] = value.split('/') as [string, string, string | undefined];
        const n = Number(nText);
        counts.set(n, (counts.get(n) ?? 0) + 1);
        if (kind === 'p') continue;
        expect(firedAt, `round ${round}: ${value} fired before it was due`).toBeGreaterThanOrEqual(due);
        if (kind === 'a') {
          expect(due, `round ${round}: ${value} deliverAt kept`).toBe(Number(argument));
        } else {
          const decisionMs = due - Number(argument);
          const decided = decidingAt.get(n);
          if (decided !== undefined) {
            expect(
              decisionMs,
              `round ${round}: ${value} counted from before the decision`,
            ).toBeGreaterThanOrEqual(decided);
          }
          const acked = committed.get(n);
          if (acked !== undefined) {
            expect(decisionMs, `round ${round}: ${value} counted from after the ack`).toBeLessThanOrEqual(
              acked,
            );
          }
        }
        delayedChecked++;
      }
      for (const [n, count] of counts) {
        expect([0, 3], `round ${round}: transaction ${n} partly visible (${count} of 3)`).toContain(count);
        expect(rolledBack.has(n), `round ${round}: rolled-back ${n} visible`).toBe(false);
      }
      for (const n of committed.keys()) expect(counts.get(n), `round ${round}: committed ${n}`).toBe(3);
      for (const [n, before] of inDoubt) {
        const now = counts.get(n) ?? 0;
        if (before !== null) expect(now, `round ${round}: in-doubt ${n} changed`).toBe(before);
        inDoubt.set(n, now);
      }
      const decided = new Map<number, 'commit' | 'rollback'>();
      for (const line of run.lines) {
        if ('deciding' in line) {
          decided.set(line.deciding, line.decision);
          decidingAt.set(line.deciding, line.atMs);
        } else if ('committed' in line) committed.set(line.committed, line.atMs);
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
    expect(delayedChecked).toBeGreaterThan(rounds * 20);
    expect(interruptedCommits).toBeGreaterThan(rounds / 2);
  }, 300_000);
});
