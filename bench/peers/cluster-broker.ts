/**
 * A cluster broker of the bench's cluster suites (failover, queue-cluster): the built CLI started as
 * `spillway broker --config <file>` (dist/src/cli/main.js), ready once a client connects to `url`.
 */
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Spillway } from '../../src/client/index.js';
import { ServerProcess } from './server-process.js';

const cliScript = path.join(
  path.dirname(fileURLToPath(import.meta.url)),
  '..',
  '..',
  'src',
  'cli',
  'main.js',
);

/** Starts broker `id` from its config file; its output goes to `logFile`. */
export function startConfiguredBroker(
  id: number,
  url: string,
  configFile: string,
  logFile: string,
): Promise<ServerProcess> {
  return ServerProcess.start({
    name: `broker ${id}`,
    command: process.execPath,
    args: [cliScript, 'broker', '--config', configFile],
    logFile,
    ready: async () => {
      try {
        const sw = await Spillway.connect(url, { connectTimeoutMs: 500 });
        await sw.close();
        return true;
      } catch {
        return false;
      }
    },
    startTimeoutMs: 30_000,
    stopTimeoutMs: 10_000,
  });
}
