/**
 * Runs the built `spillway` command (dist/src/cli/main.js) as child processes: one-shot commands
 * with their output and exit code, and a broker in the foreground. Shared by test/cli/ and
 * test/broker/restart.test.ts. Every child is bounded in time and stopped by its PID.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmdirSync, statSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repositoryRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const cliPath = join(repositoryRoot, 'dist', 'src', 'cli', 'main.js');

/** True when some src/**.ts (or bench/**.ts) has no compiled .js at least as new as itself. */
function distIsStale(): boolean {
  for (const tree of ['src', 'bench']) {
    const stack = [join(repositoryRoot, tree)];
    while (stack.length > 0) {
      const directory = stack.pop()!;
      for (const entry of readdirSync(directory, { withFileTypes: true })) {
        const path = join(directory, entry.name);
        if (entry.isDirectory()) {
          stack.push(path);
        } else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) {
          const compiled = join(repositoryRoot, 'dist', relative(repositoryRoot, path)).replace(
            /\.ts$/,
            '.js',
          );
          if (!existsSync(compiled) || statSync(compiled).mtimeMs < statSync(path).mtimeMs) return true;
        }
      }
    }
  }
  return false;
}

/**
 * Builds dist/ with tsc when it is missing or older than the sources (npm test builds first, so
 * usually nothing happens). Test files run in parallel processes: a lock directory makes one build
 * at a time. A failing tsc (another engineer's half-edited file elsewhere) still emits JavaScript;
 * the build is accepted as long as the CLI entry exists.
 */
export function ensureBuilt(): void {
  if (existsSync(cliPath) && !distIsStale()) return;
  const lock = join(
    tmpdir(),
    `spillway-test-build-${Buffer.from(repositoryRoot).toString('hex').slice(-32)}`,
  );
  const deadline = Date.now() + 120_000;
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch {
      if (Date.now() > deadline) throw new Error(`build lock ${lock} held for 120 s`);
      // Another test process is building: wait for it (Atomics.wait is a sleep that needs no event loop).
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 200);
      const held = statSync(lock, { throwIfNoEntry: false });
      if (held !== undefined && Date.now() - held.mtimeMs > 120_000) rmdirSync(lock); // left by a killed run
    }
  }
  try {
    if (existsSync(cliPath) && !distIsStale()) return;
    try {
      execFileSync('npx', ['tsc', '-p', 'tsconfig.json'], { cwd: repositoryRoot, stdio: 'pipe' });
    } catch (error) {
      if (!existsSync(cliPath)) throw error;
    }
  } finally {
    rmdirSync(lock);
  }
}

/** A port free on 127.0.0.1 right now (the OS picks it; a race with other programs is unlikely). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs `spillway ...args` to the end (killed by PID after `timeoutMs`), feeding `input` on stdin. */
export function runCli(
  args: readonly string[],
  options: { input?: string; timeoutMs?: number; cwd?: string } = {},
): Promise<CliResult> {
  const child = spawn(process.execPath, [cliPath, ...args], {
    cwd: options.cwd ?? repositoryRoot,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const stdout: Buffer[] = [];
  const stderr: Buffer[] = [];
  child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
  child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
  child.stdin.on('error', () => undefined); // a command that exits before reading all of stdin
  child.stdin.end(options.input ?? '');
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      if (child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
      reject(new Error(`spillway ${args.join(' ')}: no exit within ${options.timeoutMs ?? 20_000} ms`));
    }, options.timeoutMs ?? 20_000);
    child.once('error', reject);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({
        code,
        signal,
        stdout: Buffer.concat(stdout).toString('utf8'),
        stderr: Buffer.concat(stderr).toString('utf8'),
      });
    });
  });
}

/** `spillway broker` running as a child process. */
export class BrokerProcess {
  readonly url: string;
  readonly port: number;
  private readonly child: ChildProcess;
  private readonly stderrChunks: Buffer[] = [];
  private readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  private constructor(child: ChildProcess, port: number, stderrChunks: Buffer[]) {
    this.child = child;
    this.port = port;
    this.url = `ws://127.0.0.1:${port}`;
    this.stderrChunks = stderrChunks;
    this.exited = new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) {
        resolve({ code: child.exitCode, signal: child.signalCode });
      } else {
        child.once('exit', (code, signal) => resolve({ code, signal }));
      }
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  get stderr(): string {
    return Buffer.concat(this.stderrChunks).toString('utf8');
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /**
   * Starts `spillway broker --port P ...args` and waits for `spillway listening on ws://127.0.0.1:P`
   * (at most `timeoutMs`). `args` usually holds `--data-dir`. With `portInArgs`, no --port is added
   * (the port comes from a config file) and `port` is only what the listening line must say.
   */
  static async start(
    args: readonly string[],
    options: { port?: number; portInArgs?: boolean; timeoutMs?: number; openFilesMax?: number } = {},
  ): Promise<BrokerProcess> {
    const chosenPort = options.port ?? (await freePort());
    const timeoutMs = options.timeoutMs ?? 15_000;
    const portArgs = options.portInArgs ? [] : ['--port', String(chosenPort)];
    const command = [process.execPath, cliPath, 'broker', ...portArgs, ...args];
    // With openFilesMax: through a shell that lowers the descriptor limit (`ulimit -n`), then execs.
    const child =
      options.openFilesMax === undefined
        ? spawn(command[0]!, command.slice(1), { cwd: repositoryRoot, stdio: ['ignore', 'pipe', 'pipe'] })
        : spawn('sh', ['-c', `ulimit -n ${options.openFilesMax} && exec "$@"`, 'sh', ...command], {
            cwd: repositoryRoot,
            stdio: ['ignore', 'pipe', 'pipe'],
          });
    running.add(child);
    child.once('exit', () => running.delete(child));
    const stderrChunks: Buffer[] = [];
    child.stderr!.on('data', (chunk: Buffer) => stderrChunks.push(chunk));
    const expected = `spillway listening on ws://127.0.0.1:${chosenPort}`;
    let stdout = '';
    await new Promise<void>((resolve, reject) => {
      const fail = (why: string): void => {
        clearTimeout(timer);
        if (child.exitCode === null && child.signalCode === null) process.kill(child.pid!, 'SIGKILL');
        reject(new Error(`spillway broker ${why}; stdout: ${stdout} stderr: ${Buffer.concat(stderrChunks)}`));
      };
      const timer = setTimeout(() => fail(`printed no listening line within ${timeoutMs} ms`), timeoutMs);
      child.stdout!.on('data', (chunk: Buffer) => {
        stdout += chunk.toString('utf8');
        if (stdout.split('\n').includes(expected)) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.once('exit', (code, signal) => fail(`exited (code ${code}, signal ${signal})`));
    });
    child.removeAllListeners('exit');
    child.once('exit', () => running.delete(child));
    child.stdout!.resume();
    return new BrokerProcess(child, chosenPort, stderrChunks);
  }

  /** Sends `signal` and waits for the exit (SIGKILL after `timeoutMs`). */
  async stop(
    signal: NodeJS.Signals = 'SIGTERM',
    timeoutMs = 15_000,
  ): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.running) process.kill(this.pid, signal);
    const timer = setTimeout(() => {
      if (this.running) process.kill(this.pid, 'SIGKILL');
    }, timeoutMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }
}

const running = new Set<ChildProcess>();

/** Kills (by PID) every broker child still running: for afterAll, after a failed test. */
export function killBrokers(): void {
  for (const child of running) {
    if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      process.kill(child.pid, 'SIGKILL');
    }
  }
  running.clear();
}

/** Parses JSON lines (ignores a trailing empty line). */
export function jsonLines<T = Record<string, unknown>>(text: string): T[] {
  return text
    .split('\n')
    .filter((line) => line.length > 0)
    .map((line) => JSON.parse(line) as T);
}
