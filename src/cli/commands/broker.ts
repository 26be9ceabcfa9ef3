/**
 * `spillway broker`: runs the broker in the foreground until SIGINT/SIGTERM, then stops accepting,
 * lets in-flight requests finish, flushes every log to disk and exits 0.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { type Durability, durabilities } from '../../protocol/types.js';
import { integerFlag, UsageError } from '../cli-error.js';

export const brokerUsage = `usage: spillway broker [--data-dir DIR] [--host H] [--port P] [--durability none|interval|always]
                       [--flush-interval-ms N] [--config FILE]`;

interface BrokerConfigFile {
  dataDir?: string;
  host?: string;
  port?: number;
  durability?: Durability;
  flushIntervalMs?: number;
}

function readConfig(path: string): BrokerConfigFile {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new UsageError(`cannot read config file ${path}: ${(error as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new UsageError(`config file ${path} is not valid JSON: ${(error as Error).message}`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new UsageError(`config file ${path} must hold a JSON object`);
  }
  const known = new Set(['dataDir', 'host', 'port', 'durability', 'flushIntervalMs']);
  for (const key of Object.keys(parsed)) {
    if (!known.has(key)) throw new UsageError(`config file ${path}: unknown key '${key}'`);
  }
  return parsed as BrokerConfigFile;
}

export async function runBroker(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      'data-dir': { type: 'string' },
      host: { type: 'string' },
      port: { type: 'string' },
      durability: { type: 'string' },
      'flush-interval-ms': { type: 'string' },
      config: { type: 'string' },
    },
    strict: true,
    allowPositionals: false,
  });
  const file = values.config ? readConfig(values.config) : {};
  const durability = (values.durability ?? file.durability ?? 'interval') as Durability;
  if (!durabilities.includes(durability)) {
    throw new UsageError(`--durability must be one of ${durabilities.join(', ')}`);
  }
  const port = integerFlag('port', values.port) ?? file.port ?? 7070;
  if (port > 65535) throw new UsageError('--port must be at most 65535');
  const host = values.host ?? file.host ?? '127.0.0.1';
  const flushIntervalMs =
    integerFlag('flush-interval-ms', values['flush-interval-ms'], 1) ?? file.flushIntervalMs;
  const dataDir = values['data-dir'] ?? file.dataDir ?? './spillway-data';

  const { Broker } = await import('../../broker/broker.js');
  const broker = await Broker.open({
    dataDir,
    durability,
    ...(flushIntervalMs !== undefined ? { flushIntervalMs } : {}),
  });
  let server: Awaited<ReturnType<typeof broker.listen>>;
  try {
    server = await broker.listen({ host, port });
  } catch (error) {
    await broker.close();
    throw error;
  }
  process.stdout.write(`spillway listening on ${server.url}\n`);
  await new Promise<void>((resolve) => {
    const stop = () => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      resolve();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
  process.stderr.write('spillway: shutting down\n');
  await server.close();
  await broker.close();
  return 0;
}
