/**
 * The replication suite end to end (bench/suites/replication.ts, quick, 16 KiB only): four broker
 * child processes of the built tree, the rows it reports, and a child's stdout lines that are not
 * its JSON (what `node --trace-opt dist/bench/main.js` makes the children print) passed to stderr
 * under the child's name instead of failing the suite. Figures are not asserted (no timing in tests):
 * only that each row is a finite figure and the idle share a percentage.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { BenchResults } from '../../bench/main.js';
import { ensureBuilt, repositoryRoot } from '../cli/cli-process.js';

const temporaryDirectories: string[] = [];
afterEach(() => {
  for (const directory of temporaryDirectories.splice(0)) rmSync(directory, { recursive: true, force: true });
});

/** Runs `node [nodeFlags] dist/bench/main.js args` (bounded: killed by PID after 60 s). */
function runBenchProcess(
  nodeFlags: string[],
  args: string[],
): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [...nodeFlags, path.join(repositoryRoot, 'dist', 'bench', 'main.js'), ...args],
      {
        cwd: repositoryRoot,
        env: { ...process.env, SPILLWAY_BENCH_REPLICATION_SIZES: '16384' },
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    );
    let stderr = '';
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (chunk: string) => {
      stderr += chunk;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.once('error', reject);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr });
    });
  });
}

describe('replication suite', () => {
  it('reports its rows, the idle share among them, and passes a child stdout line that is not JSON to stderr', async () => {
    ensureBuilt();
    const directory = mkdtempSync(path.join(tmpdir(), 'spillway-bench-replication-'));
    temporaryDirectories.push(directory);
    const out = path.join(directory, 'results');
    // Every process of the run (the children take the parent's node flags) prints this line first.
    const marker = 'not-json-from-a-child';
    const { code, stderr } = await runBenchProcess(
      ['--import', `data:text/javascript,process.stdout.write("${marker}\\n")`],
      ['--suite', 'replication', '--quick', '--out', out, '--scratch', directory],
    );
    expect(code, stderr).toBe(0);

    const { rows, metadata } = JSON.parse(
      readFileSync(path.join(out, 'results.json'), 'utf8'),
    ) as BenchResults;
    expect(metadata.suitesFailed).toEqual([]);
    expect(rows.map((row) => row.name)).toEqual([
      'single broker, 16 KiB',
      'RF=3 acks all, 16 KiB',
      'RF=3 acks all ÷ single, 16 KiB',
      'RF=3 CPU per broker per run, 16 KiB',
      'CPU per MB acknowledged, RF=3 (3 brokers) ÷ single, 16 KiB',
      'client CPU per MB acknowledged, RF=3 run ÷ single run, 16 KiB',
      'machine idle during the runs, RF=3 runs, 16 KiB',
    ]);
    for (const row of rows) expect(Number.isFinite(row.value), row.name).toBe(true);
    const idle = rows.at(-1)!;
    expect(idle.unit).toBe('%');
    expect(idle.value).toBeGreaterThanOrEqual(0);
    expect(idle.value).toBeLessThanOrEqual(100);
    expect(idle.detail).toMatch(/^single-broker runs \d+ %/);

    for (const name of ['single', 'replica 1', 'replica 2', 'replica 3']) {
      expect(stderr).toContain(`[${name}] ${marker}`);
    }
    // Each run logs its rate, the brokers' and the client's CPU per MB and the idle share.
    expect(stderr).toMatch(
      /single [\d.]+ MB\/s, CPU ms\/MB brokers [\d.]+, client [\d.]+, machine idle \d+ %/,
    );
    expect(stderr).toMatch(
      /RF=3 [\d.]+ MB\/s, CPU ms\/MB brokers [\d.]+ [\d.]+ [\d.]+, client [\d.]+, machine idle \d+ %/,
    );
  }, 90_000);
});
