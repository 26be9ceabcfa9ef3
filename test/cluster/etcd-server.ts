/**
 * A private etcd for the cluster tests: one member on two free loopback ports (client, peer) with its
 * own temporary data directory, started as a child process in its own process group and stopped by
 * PID (ServerProcess: SIGTERM, then SIGKILL to its group). `restart()` stops it and starts it again
 * on the same ports and data directory (what an etcd restart looks like to its clients).
 *
 * `etcdMissing` tells whether the etcd binary is installed: the cluster tests skip with
 * `etcdSkipReason` only then (.ci/run installs Debian's etcd-server).
 *
 * The heartbeat and election timeouts are short (50 / 500 ms) so that a one-member cluster elects
 * itself at once after a start and leases of 1 s are allowed (etcd's minimum lease TTL is 1.5 ×
 * the election timeout).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findExecutable } from '../../bench/peers/install.js';
import { freePort, ServerProcess } from '../../bench/peers/server-process.js';

export const etcdExecutable = findExecutable('etcd');
export const etcdMissing = etcdExecutable === undefined;
export const etcdSkipReason =
  'etcd is not installed (install it with `apt-get install -y etcd-server` as root)';

export interface TestEtcd {
  /** `etcd://127.0.0.1:PORT`, what `--cluster` takes. */
  readonly url: string;
  /** `http://127.0.0.1:PORT`, what the etcd3 client takes. */
  readonly clientUrl: string;
  readonly clientPort: number;
  /** The PID of the running etcd (changes with restart). */
  pid(): number;
  /** SIGTERM (then SIGKILL), same data directory kept. */
  stop(): Promise<void>;
  /** Starts it again on the same ports and data directory. */
  start(): Promise<void>;
  restart(): Promise<void>;
  /** Stops it and deletes its data directory. */
  close(): Promise<void>;
}

async function healthy(clientUrl: string): Promise<boolean> {
  const response = await fetch(`${clientUrl}/health`, { signal: AbortSignal.timeout(500) });
  if (!response.ok) return false;
  const body = (await response.json()) as { health?: unknown };
  return body.health === 'true';
}

/** Starts tried on fresh ports when the chosen ones were taken meanwhile. */
const startAttemptsOnBoundPort = 3;

export async function startEtcd(): Promise<TestEtcd> {
  if (etcdExecutable === undefined) throw new Error(etcdSkipReason);
  const executable = etcdExecutable;
  const directory = mkdtempSync(join(tmpdir(), 'spillway-etcd-'));
  // Ports are taken free, then bound by etcd: another process (a parallel test file, a benchmark)
  // can take one in between. A start that fails on a bound port is tried again on new ports.
  let clientPort = 0;
  let clientUrl = '';
  let args: string[] = [];
  const choosePorts = async (): Promise<void> => {
    clientPort = await freePort();
    const peerPort = await freePort();
    clientUrl = `http://127.0.0.1:${clientPort}`;
    const peerUrl = `http://127.0.0.1:${peerPort}`;
    // biome-ignore format: one option per line
    args = [
      '--name', 'test',
      '--data-dir', join(directory, 'data'),
      '--listen-client-urls', clientUrl,
      '--advertise-client-urls', clientUrl,
      '--listen-peer-urls', peerUrl,
      '--initial-advertise-peer-urls', peerUrl,
      '--initial-cluster', `test=${peerUrl}`,
      '--heartbeat-interval', '50',
      '--election-timeout', '500',
      '--logger', 'zap',
      '--log-level', 'warn',
    ];
  };
  let server: ServerProcess | undefined;
  const start = async (): Promise<void> => {
    server = await ServerProcess.start({
      name: 'etcd',
      command: executable,
      args,
      cwd: directory,
      logFile: join(directory, 'etcd.log'),
      ready: () => healthy(clientUrl),
      startTimeoutMs: 15_000,
      stopTimeoutMs: 10_000,
    });
  };
  const stop = async (): Promise<void> => {
    const running = server;
    server = undefined;
    if (running !== undefined) await running.stop();
  };
  for (let attempt = 1; ; attempt++) {
    await choosePorts();
    try {
      await start();
      break;
    } catch (error) {
      if (attempt >= startAttemptsOnBoundPort || !String(error).includes('address already in use'))
        throw error;
      rmSync(join(directory, 'data'), { recursive: true, force: true });
    }
  }
  return {
    url: `etcd://127.0.0.1:${clientPort}`,
    clientUrl,
    clientPort,
    pid: () => {
      if (server === undefined) throw new Error('etcd is stopped');
      return server.pid;
    },
    stop,
    start,
    async restart() {
      await stop();
      await start();
    },
    async close() {
      await stop();
      rmSync(directory, { recursive: true, force: true });
    },
  };
}
