/**
 * Shared by the SIGKILL tests of the broker's state: runs a compiled child script with plain `node`,
 * collects the JSON lines it prints (stdout is a pipe, written synchronously on Linux, so a printed
 * line happened before any kill), and SIGKILLs it a given time after its first acknowledgement.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repositoryRoot = join(dirname(fileURLToPath(import.meta.url)), '..');

/** Builds with tsc when `script` (under dist/) is missing or older than `source`. */
export function ensureBuilt(script: string, source: string): void {
  if (existsSync(script) && statSync(script).mtimeMs >= statSync(source).mtimeMs) return;
  const build = spawnSync('npx', ['tsc', '-p', 'tsconfig.json'], { cwd: repositoryRoot, encoding: 'utf8' });
  if (!existsSync(script)) throw new Error(`tsc did not produce ${script}:\n${build.stdout}${build.stderr}`);
}

/** mulberry32: a small seeded generator, so kill delays are reproducible from the seed. */
export function seededRandom(state: number): () => number {
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface KilledRun<Line> {
  lines: Line[];
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
}

export interface KillOptions<Line> {
  script: string;
  args: string[];
  /** Lines that count as acknowledgements: the kill timer starts at the first one. */
  isAck: (line: Line) => boolean;
  killDelayMs: number;
  /** Kill anyway when no acknowledgement came this long after the start. */
  firstAckTimeoutMs: number;
}

export function runUntilKilled<Line>(options: KillOptions<Line>): Promise<KilledRun<Line>> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [options.script, ...options.args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const run: KilledRun<Line> = { lines: [], code: null, signal: null, stderr: '' };
    let pending = '';
    let killTimer: NodeJS.Timeout | null = null;
    const watchdog = setTimeout(() => child.kill('SIGKILL'), options.firstAckTimeoutMs);
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      const lines = (pending + chunk).split('\n');
      pending = lines.pop()!;
      for (const text of lines) {
        const line = JSON.parse(text) as Line;
        run.lines.push(line);
        if (killTimer === null && options.isAck(line)) {
          clearTimeout(watchdog);
          killTimer = setTimeout(() => child.kill('SIGKILL'), options.killDelayMs);
        }
      }
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => {
      run.stderr += chunk;
    });
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(watchdog);
      if (killTimer !== null) clearTimeout(killTimer);
      run.code = code;
      run.signal = signal;
      resolvePromise(run);
    });
  });
}
