/**
 * A failed assertion aborts the process (SIGABRT) after writing the message and a stack to stderr,
 * even inside a try/catch. Run in a child process (assert-child.ts, compiled by tsc): an abort here
 * would take the test worker down.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';

const repositoryRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const childScript = join(repositoryRoot, 'dist/test/assert-child.js');
const childSources = ['test/assert-child.ts', 'src/assert.ts', 'src/storage/spare-segment.ts'].map((path) =>
  join(repositoryRoot, path),
);

beforeAll(() => {
  // `npm test` runs tsc first; a targeted run may find no build, or an old one.
  const built = existsSync(childScript) ? statSync(childScript).mtimeMs : 0;
  if (childSources.every((source) => statSync(source).mtimeMs <= built)) return;
  const build = spawnSync('npx', ['tsc', '-p', 'tsconfig.json'], { cwd: repositoryRoot, encoding: 'utf8' });
  if (!existsSync(childScript)) {
    throw new Error(`tsc did not produce ${childScript}:\n${build.stdout}${build.stderr}`);
  }
}, 120_000);

interface ChildOutcome {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function runChild(caseName: string): ChildOutcome {
  const directory = mkdtempSync(join(tmpdir(), 'spillway-assert-'));
  try {
    // `ulimit -c 0`: an abort must not leave a core file behind; `exec` keeps the signal visible.
    const result = spawnSync(
      'sh',
      ['-c', 'ulimit -c 0; exec "$0" "$@"', process.execPath, childScript, caseName, directory],
      { encoding: 'utf8', timeout: 30_000 },
    );
    return { status: result.status, signal: result.signal, stdout: result.stdout, stderr: result.stderr };
  } finally {
    rmSync(directory, { recursive: true, force: true });
  }
}

function expectAbort(outcome: ChildOutcome, message: string): void {
  expect(outcome.signal).toBe('SIGABRT');
  expect(outcome.stdout).not.toContain('survived');
  expect(outcome.stderr).toContain(`spillway: assertion failed: ${message}`);
}

describe('assert', () => {
  it('lets the process go on when the condition holds', () => {
    const outcome = runChild('holds');
    expect(outcome).toMatchObject({ status: 0, signal: null });
    expect(outcome.stdout).toBe('survived\n');
    expect(outcome.stderr).toBe('');
  });

  it('aborts with the message and a stack on stderr', () => {
    const outcome = runChild('assert-false');
    expectAbort(outcome, 'the invariant under test');
    // The stack names the frame that broke the invariant.
    expect(outcome.stderr).toMatch(/at .*assert-child\.js/);
  });

  it('builds a lazy message only to report it', () => {
    expectAbort(runChild('lazy-message'), 'a lazy message 42');
  });

  it('unreachable aborts', () => {
    expectAbort(runChild('unreachable'), 'a branch that cannot run');
  });

  it('cannot be caught', () => {
    const outcome = runChild('caught');
    expectAbort(outcome, 'caught by a try');
    expect(outcome.stdout).not.toContain('caught');
  });
});

describe('programmer errors of storage classes abort', () => {
  it('SpareSegment.prepare with a bad capacity or zero-write size', () => {
    expectAbort(runChild('spare-capacity'), 'spare segment capacity must be a positive integer, got 0');
    expectAbort(runChild('spare-zero-write-small'), 'zero-write size must be in [1, ');
    expectAbort(runChild('spare-zero-write-large'), 'zero-write size must be in [1, ');
  });

  it('SpareSegment.take before the spare is ready', () => {
    expectAbort(runChild('spare-take-filling'), 'take() of a spare segment in state filling');
  });
});
