/**
 * The forward rewrite of `__delay` killed with SIGKILL (delay-rewrite-crash-child.ts): 40 messages a
 * year ahead spread over the first segments, then a steady flow of short delays, in one data
 * directory over many runs. Runs kill themselves at a rewrite step (copies durable, marker not; marker
 * durable, wheel not redirected) or are killed at random. After every restart: the 40 far messages are
 * pending exactly once (none lost, none doubled by a copy), every acknowledged short message fired
 * exactly once, and `__delay` stays bounded (a few 64 KiB segments, not the megabytes written).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureBuilt, repositoryRoot, runUntilKilled, seededRandom } from '../../kill-runner.js';

const childScript = join(repositoryRoot, 'dist/test/broker/delay/delay-rewrite-crash-child.js');
const childSource = join(repositoryRoot, 'test/broker/delay/delay-rewrite-crash-child.ts');
const seed = 120_614;
const kills = ['copied', 'random', 'marked', 'random', 'copied', 'marked', 'random', 'copied', 'random'];

type Line =
  | {
      opened: {
        values: string[];
        far: number;
        pending: number;
        report: { movedFound: number; pending: number };
        delayLogBytes: number;
      };
    }
  | { acked: [string, string] }
  | { bytes: number };

let directory = '';
beforeAll(() => {
  ensureBuilt(childScript, childSource);
  directory = mkdtempSync(join(tmpdir(), 'spillway-delay-rewrite-crash-'));
}, 120_000);
afterAll(() => rmSync(directory, { recursive: true, force: true }));

describe('forward rewrite of __delay, SIGKILLed', () => {
  it(`far messages pending once, short ones fired once, __delay bounded (seed ${seed})`, async () => {
    const random = seededRandom(seed);
    const acked: string[] = [];
    let written = 0;
    let movedFound = 0;
    let largest = 0;
    for (let round = 0; round <= kills.length; round++) {
      const killAt = kills[round] ?? 'random';
      const run = await runUntilKilled<Line>({
        script: childScript,
        args: [directory, String(round), killAt],
        isAck: (line) => 'acked' in line,
        killDelayMs: killAt === 'random' ? 1500 + Math.floor(random() * 1500) : 20_000,
        firstAckTimeoutMs: 30_000,
      });
      const opened = run.lines.find((line): line is Extract<Line, { opened: unknown }> => 'opened' in line);
      expect(opened, `round ${round}: the broker did not open: ${run.stderr}`).toBeDefined();
      const { values, far, pending, report, delayLogBytes } = opened!.opened;
      expect(far, `round ${round}: far messages pending`).toBe(round === 0 ? 0 : 40);
      expect(pending, `round ${round}: short messages left pending`).toBe(far);
      const seen = new Set(values);
      expect(seen.size, `round ${round}: a message fired twice`).toBe(values.length);
      for (const value of acked) expect(seen.has(value), `round ${round}: ${value} lost`).toBe(true);
      expect(values.filter((value) => value.startsWith('far/'))).toEqual([]);
      movedFound += report.movedFound;
      largest = Math.max(largest, delayLogBytes);
      for (const line of run.lines) {
        if ('acked' in line) {
          const [first, last] = line.acked;
          const [r, step] = first.split('/');
          for (let i = 0; i <= Number(last.split('/')[2]); i++) acked.push(`${r}/${step}/${i}`);
          written += 20 * 330;
        } else if ('bytes' in line) largest = Math.max(largest, line.bytes);
      }
      if (round < kills.length) expect(run.signal, `round ${round}: ${run.stderr}`).toBe('SIGKILL');
    }
    // Kills at the 'copied' step left copies without their marker: recovery marked them.
    expect(movedFound).toBeGreaterThan(0);
    // Bounded: what the flow writes in a couple of seconds, not the total.
    expect(written).toBeGreaterThan(3 * largest);
    expect(largest).toBeLessThan(24 * 64 * 1024);
  }, 300_000);
});
