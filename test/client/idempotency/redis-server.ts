/**
 * A private redis-server for the idempotency tests: started on a free port with its own temporary
 * directory (no persistence), stopped by PID (ServerProcess: SIGTERM, then SIGKILL to its own
 * process group). `redisMissing` tells whether redis-server is installed: the Redis tests skip with
 * that reason only then (CI installs it: `node dist/bench/peers/install.js redis` in .ci/run).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createClient } from 'redis';
import { findExecutable } from '../../../bench/peers/install.js';
import { canConnect, freePort, ServerProcess } from '../../../bench/peers/server-process.js';

export const redisExecutable = findExecutable('redis-server');
export const redisMissing = redisExecutable === undefined;
export const redisSkipReason =
  'redis-server is not installed (install it with `node dist/bench/peers/install.js redis` as root)';

function newClient(port: number) {
  return createClient({ socket: { host: '127.0.0.1', port, reconnectStrategy: false } });
}
export type TestRedisClient = ReturnType<typeof newClient>;

export interface TestRedis {
  port: number;
  pid: number;
  /** A connected node-redis client (closed by stop()). */
  client(): Promise<TestRedisClient>;
  stop(): Promise<void>;
}

export async function startRedis(): Promise<TestRedis> {
  if (redisExecutable === undefined) throw new Error(redisSkipReason);
  const directory = mkdtempSync(join(tmpdir(), 'spillway-redis-'));
  const port = await freePort();
  // biome-ignore format: one option per line
  const args = [
    '--port', String(port),
    '--bind', '127.0.0.1',
    '--dir', directory,
    '--save', '',
    '--appendonly', 'no',
    '--daemonize', 'no',
    '--logfile', '',
  ];
  const server = await ServerProcess.start({
    name: 'redis-server',
    command: redisExecutable,
    args,
    cwd: directory,
    logFile: join(directory, 'redis.log'),
    ready: () => canConnect(port),
    startTimeoutMs: 10_000,
    stopTimeoutMs: 10_000,
  });
  const clients: TestRedisClient[] = [];
  return {
    port,
    pid: server.pid,
    async client() {
      const client = newClient(port);
      client.on('error', () => {}); // surfaced by the failing command
      await client.connect();
      clients.push(client);
      return client;
    },
    async stop() {
      for (const client of clients.splice(0)) client.destroy();
      await server.stop();
      rmSync(directory, { recursive: true, force: true });
    },
  };
}
