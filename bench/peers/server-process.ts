/**
 * A peer server run as a child process: started in its own process group with stdout and stderr
 * appended to a log file, considered ready when a probe (a TCP connect, usually) succeeds, and stopped
 * by PID: SIGTERM to the server, then SIGKILL to its process group after a timeout. The group holds
 * only what the server started (Erlang's helper programs, a shell wrapper's child), so nothing else on
 * the machine is signalled.
 *
 * Not safe for concurrent start/stop calls on one instance.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import * as net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { waitAtMost } from './wait.js';

export interface ServerProcessOptions {
  /** For messages: 'redis-server'. */
  name: string;
  command: string;
  args: readonly string[];
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** stdout and stderr are appended here. */
  logFile: string;
  /** Polled until it resolves true; the server is ready then. */
  ready: () => Promise<boolean>;
  startTimeoutMs: number;
  /** Between SIGTERM and SIGKILL. */
  stopTimeoutMs: number;
}

/** Polling period of the readiness probe and of the exit checks. */
const pollIntervalMs = 50;

/** Lines of the log quoted in a start failure. */
const logTailLines = 15;

export class ServerProcess {
  private exitDescription: string | undefined;
  private readonly exited: Promise<void>;

  private constructor(
    private readonly options: ServerProcessOptions,
    child: ChildProcess,
    readonly pid: number,
  ) {
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.exitDescription = signal === null ? `exit code ${code}` : `signal ${signal}`;
        resolve();
      });
    });
  }

  /** Spawns the server and waits until `ready` says so; on failure the process is stopped and the log tail is in the error. */
  static async start(options: ServerProcessOptions): Promise<ServerProcess> {
    const log = openSync(options.logFile, 'a');
    let child: ChildProcess;
    try {
      child = spawn(options.command, [...options.args], {
        cwd: options.cwd,
        env: options.env ?? process.env,
        stdio: ['ignore', log, log],
        detached: true, // its own process group: SIGKILL reaches the helpers it starts, and only them
      });
    } finally {
      closeSync(log); // the child holds its own descriptor
    }
    const spawnError = await new Promise<Error | undefined>((resolve) => {
      child.once('spawn', () => resolve(undefined));
      child.once('error', (error) => resolve(error));
    });
    if (spawnError !== undefined || child.pid === undefined) {
      throw new Error(`${options.name}: cannot start ${options.command}: ${spawnError?.message ?? 'no pid'}`);
    }
    child.unref(); // a forgotten server must not keep the bench alive; stop() still waits for it
    const server = new ServerProcess(options, child, child.pid);
    const deadline = performance.now() + options.startTimeoutMs;
    for (;;) {
      if (server.exitDescription !== undefined) {
        throw new Error(
          `${options.name} exited during start (${server.exitDescription}); log ${options.logFile}:\n${server.logTail()}`,
        );
      }
      if (await options.ready().catch(() => false)) return server;
      if (performance.now() > deadline) {
        await server.stop();
        throw new Error(
          `${options.name} not ready after ${options.startTimeoutMs} ms; log ${options.logFile}:\n${server.logTail()}`,
        );
      }
      await sleep(pollIntervalMs);
    }
  }

  /** True while the server process has not exited. */
  get running(): boolean {
    return this.exitDescription === undefined;
  }

  /** True while any process of the server's group remains (the server or a helper it started). */
  groupAlive(): boolean {
    try {
      process.kill(-this.pid, 0);
      return true;
    } catch (error) {
      return (error as NodeJS.ErrnoException).code === 'EPERM';
    }
  }

  /**
   * SIGTERM, then SIGKILL to the group after `stopTimeoutMs`; returns how it ended. Resolves only once
   * the whole group is gone (or a final SIGKILL was sent and a further wait expired).
   */
  async stop(): Promise<'already exited' | 'SIGTERM' | 'SIGKILL'> {
    let how: 'already exited' | 'SIGTERM' | 'SIGKILL' = 'already exited';
    if (this.running) {
      how = 'SIGTERM';
      signal(this.pid, 'SIGTERM');
      if (!(await waitAtMost(this.exited, this.options.stopTimeoutMs))) {
        how = 'SIGKILL';
        signal(-this.pid, 'SIGKILL');
        await waitAtMost(this.exited, this.options.stopTimeoutMs);
      }
    }
    // Helpers of the server (a port program, a shell wrapper's child) may outlive it for a moment.
    const deadline = performance.now() + this.options.stopTimeoutMs;
    while (this.groupAlive() && performance.now() < deadline) await sleep(pollIntervalMs);
    if (this.groupAlive()) {
      how = 'SIGKILL';
      signal(-this.pid, 'SIGKILL');
      const killDeadline = performance.now() + 2000;
      while (this.groupAlive() && performance.now() < killDeadline) await sleep(pollIntervalMs);
    }
    return how;
  }

  /** The last lines of the log file. */
  logTail(lines: number = logTailLines): string {
    try {
      return readFileSync(this.options.logFile, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }
}

function signal(target: number, name: NodeJS.Signals): void {
  try {
    process.kill(target, name);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
  }
}

/** A port free on 127.0.0.1 right now (the kernel's choice, so never a well-known default). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => {
        if (typeof address === 'object' && address !== null) resolve(address.port);
        else reject(new Error('no port'));
      });
    });
  });
}

/** True when a TCP connection to 127.0.0.1:port succeeds within `timeoutMs`. */
export async function canConnect(port: number, timeoutMs: number = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    const done = (result: boolean): void => {
      socket.destroy();
      resolve(result);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}
