/**
 * `spillway broker`: runs the broker in the foreground until SIGINT/SIGTERM (SIGHUP reloads the
 * auth file, keeping the previous one when the new one does not load), then stops accepting,
 * lets in-flight requests finish, flushes every log to disk and exits 0.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { BrokerClusterOptions } from '../../broker/broker-options.js';
import { validateClusterOptions } from '../../cluster/control/cluster-options.js';
import { SpillwayError } from '../../errors.js';
import { brokerIdMax, flushIntervalMsMax, portMax, segmentBytesMax, segmentBytesMin } from '../../limits.js';
import { type Durability, durabilities } from '../../protocol/types.js';
import { integerFlag, UsageError } from '../cli-error.js';

export const brokerUsage = `usage: spillway broker [--data-dir DIR] [--host H] [--port P] [--durability none|interval|always]
                       [--flush-interval-ms N] [--disk-reserve-bytes N] [--scrub-bytes-per-second N]
                       [--allow-origin ORIGIN]... [--allow-host NAME]... [--max-connections-per-address N]
                       [--handshake-timeout-ms N] [--reset-state-log NAME]... [--group-retention-ms N]
                       [--producer-idle-expiry-ms N] [--producers-max N] [--auth-file FILE]
                       [--tls-cert FILE --tls-key FILE] [--memory-budget-bytes N] [--no-inline-fdatasync]
                       [--cluster etcd://H:P --broker-id N [--advertise ws://H:P] [--cluster-token-file FILE]]
                       [--config FILE]`;

interface BrokerConfigFile {
  dataDir?: string;
  host?: string;
  port?: number;
  durability?: Durability;
  flushIntervalMs?: number;
  diskReserveBytes?: number;
  scrubBytesPerSecond?: number;
  scrubPassIntervalMs?: number;
  allowedOrigins?: string[];
  allowedHosts?: string[];
  maxConnectionsPerAddress?: number;
  handshakeTimeoutMs?: number;
  httpBodyBudgetBytes?: number;
  httpSendBudgetBytes?: number;
  httpBodyTimeoutMs?: number;
  fileMode?: number;
  directoryMode?: number;
  producerIdleExpiryMs?: number;
  producersMax?: number;
  authFile?: string;
  tlsCert?: string;
  tlsKey?: string;
  memoryBudgetBytes?: number;
  memoryCeilingBytes?: number;
  cluster?: string;
  brokerId?: number;
  advertise?: string;
  clusterName?: string;
  clusterSessionTimeoutMs?: number;
  clusterTokenFile?: string;
  delaySegmentBytes?: number;
  delayTransactionsKeptMax?: number;
  inlineFdatasync?: boolean;
}

const isInteger = (value: unknown, min: number, max: number): boolean =>
  typeof value === 'number' && Number.isSafeInteger(value) && value >= min && value <= max;
const isNonEmptyString = (value: unknown): boolean => typeof value === 'string' && value.length > 0;
const isStringList = (value: unknown): boolean => Array.isArray(value) && value.every(isNonEmptyString);
const positiveCheck = {
  expected: 'a positive integer',
  valid: (value: unknown) => isInteger(value, 1, Number.MAX_SAFE_INTEGER),
};
const modeCheck = {
  expected: 'permission bits in [0, 511] (0o777)',
  valid: (value: unknown) => isInteger(value, 0, 0o777),
};

/**
 * The keys a config file may hold and what each must be: a wrong type is bad usage (exit 2), like the
 * same mistake on the command line, not an error of the broker.
 */
const configChecks: Record<keyof BrokerConfigFile, { expected: string; valid: (value: unknown) => boolean }> =
  {
    dataDir: { expected: 'a non-empty string', valid: isNonEmptyString },
    host: { expected: 'a non-empty string', valid: isNonEmptyString },
    port: { expected: `an integer in [0, ${portMax}]`, valid: (value) => isInteger(value, 0, portMax) },
    durability: {
      expected: `one of ${durabilities.join(', ')}`,
      valid: (value) => durabilities.includes(value as Durability),
    },
    flushIntervalMs: {
      expected: `an integer in [1, ${flushIntervalMsMax}]`,
      valid: (value) => isInteger(value, 1, flushIntervalMsMax),
    },
    diskReserveBytes: {
      expected: 'an integer >= 0',
      valid: (value) => isInteger(value, 0, Number.MAX_SAFE_INTEGER),
    },
    scrubBytesPerSecond: {
      expected: 'an integer >= 0',
      valid: (value) => isInteger(value, 0, Number.MAX_SAFE_INTEGER),
    },
    scrubPassIntervalMs: {
      expected: 'an integer in [1, 2147483647]',
      valid: (value) => isInteger(value, 1, 2_147_483_647),
    },
    producerIdleExpiryMs: positiveCheck,
    producersMax: positiveCheck,
    allowedOrigins: { expected: 'an array of non-empty strings', valid: isStringList },
    allowedHosts: { expected: 'an array of non-empty strings', valid: isStringList },
    maxConnectionsPerAddress: positiveCheck,
    handshakeTimeoutMs: {
      expected: 'an integer >= 0',
      valid: (value) => isInteger(value, 0, 2_147_483_647),
    },
    httpBodyBudgetBytes: positiveCheck,
    httpSendBudgetBytes: positiveCheck,
    httpBodyTimeoutMs: positiveCheck,
    fileMode: modeCheck,
    directoryMode: modeCheck,
    authFile: { expected: 'a non-empty string', valid: isNonEmptyString },
    tlsCert: { expected: 'a non-empty string', valid: isNonEmptyString },
    tlsKey: { expected: 'a non-empty string', valid: isNonEmptyString },
    memoryBudgetBytes: positiveCheck,
    memoryCeilingBytes: positiveCheck,
    cluster: { expected: 'an etcd://host:port address', valid: isNonEmptyString },
    brokerId: {
      expected: 'an integer in [0, 2147483647]',
      valid: (value) => isInteger(value, 0, brokerIdMax),
    },
    advertise: { expected: 'a ws:// or wss:// URL', valid: isNonEmptyString },
    clusterName: { expected: 'a non-empty string', valid: isNonEmptyString },
    clusterSessionTimeoutMs: positiveCheck,
    clusterTokenFile: { expected: 'a non-empty string', valid: isNonEmptyString },
    delaySegmentBytes: {
      expected: `an integer in [${segmentBytesMin}, ${segmentBytesMax}]`,
      valid: (value) => isInteger(value, segmentBytesMin, segmentBytesMax),
    },
    delayTransactionsKeptMax: positiveCheck,
    inlineFdatasync: { expected: 'true or false', valid: (value) => typeof value === 'boolean' },
  };

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
  for (const [key, value] of Object.entries(parsed)) {
    const check = configChecks[key as keyof BrokerConfigFile];
    if (check === undefined) throw new UsageError(`config file ${path}: unknown key '${key}'`);
    if (!check.valid(value)) {
      throw new UsageError(
        `config file ${path}: '${key}' must be ${check.expected}, got ${JSON.stringify(value)}`,
      );
    }
  }
  return parsed as BrokerConfigFile;
}

/** The entries of `values` that are not undefined (exactOptionalPropertyTypes). */
function definedOnly<T extends Record<string, number | undefined>>(values: T): { [K in keyof T]?: number } {
  const result: { [K in keyof T]?: number } = {};
  for (const [key, value] of Object.entries(values)) {
    if (value !== undefined) result[key as keyof T] = value;
  }
  return result;
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
      'disk-reserve-bytes': { type: 'string' },
      'scrub-bytes-per-second': { type: 'string' },
      'allow-origin': { type: 'string', multiple: true },
      'allow-host': { type: 'string', multiple: true },
      'max-connections-per-address': { type: 'string' },
      'handshake-timeout-ms': { type: 'string' },
      'reset-state-log': { type: 'string', multiple: true },
      'group-retention-ms': { type: 'string' },
      'producer-idle-expiry-ms': { type: 'string' },
      'producers-max': { type: 'string' },
      'auth-file': { type: 'string' },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      'memory-budget-bytes': { type: 'string' },
      'no-inline-fdatasync': { type: 'boolean' },
      cluster: { type: 'string' },
      'broker-id': { type: 'string' },
      advertise: { type: 'string' },
      'cluster-token-file': { type: 'string' },
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
  if (port > portMax) throw new UsageError(`--port must be at most ${portMax}`);
  const host = values.host ?? file.host ?? '127.0.0.1';
  const flushIntervalMs =
    integerFlag('flush-interval-ms', values['flush-interval-ms'], 1) ?? file.flushIntervalMs;
  if (flushIntervalMs !== undefined && flushIntervalMs > flushIntervalMsMax) {
    throw new UsageError(`--flush-interval-ms must be at most ${flushIntervalMsMax}`);
  }
  const dataDir = values['data-dir'] ?? file.dataDir ?? './spillway-data';
  const diskReserveBytes =
    integerFlag('disk-reserve-bytes', values['disk-reserve-bytes']) ?? file.diskReserveBytes;
  const scrubBytesPerSecond =
    integerFlag('scrub-bytes-per-second', values['scrub-bytes-per-second']) ?? file.scrubBytesPerSecond;
  const producerIdleExpiryMs =
    integerFlag('producer-idle-expiry-ms', values['producer-idle-expiry-ms'], 1) ?? file.producerIdleExpiryMs;
  const producersMax = integerFlag('producers-max', values['producers-max'], 1) ?? file.producersMax;

  const authFile = values['auth-file'] ?? file.authFile;
  const tlsCert = values['tls-cert'] ?? file.tlsCert;
  const tlsKey = values['tls-key'] ?? file.tlsKey;
  if ((tlsCert === undefined) !== (tlsKey === undefined)) {
    throw new UsageError('--tls-cert and --tls-key go together');
  }
  // Read before the broker opens: a broken auth file stops the start with its error.
  const { loadAuthFile } = await import('../../server/auth/auth-file.js');
  const auth = authFile === undefined ? undefined : loadAuthFile(authFile);
  const memoryBudgetBytes =
    integerFlag('memory-budget-bytes', values['memory-budget-bytes'], 1) ?? file.memoryBudgetBytes;

  const cluster = clusterFlags(values, file, host, port, auth !== undefined);
  // Process-wide: every log of this process shares its one event loop (storage/inline-sync.ts).
  if (values['no-inline-fdatasync'] === true || file.inlineFdatasync === false) {
    const { inlineSyncBudget } = await import('../../storage/inline-sync.js');
    inlineSyncBudget.enabled = false;
  }

  const { Broker } = await import('../../spillway-broker.js');
  const broker = await Broker.open({
    ...(cluster !== undefined ? { cluster } : {}),
    dataDir,
    durability,
    ...(flushIntervalMs !== undefined ? { flushIntervalMs } : {}),
    ...(diskReserveBytes !== undefined ? { diskReserveBytes } : {}),
    ...(scrubBytesPerSecond !== undefined ? { scrubBytesPerSecond } : {}),
    ...(file.scrubPassIntervalMs !== undefined ? { scrubPassIntervalMs: file.scrubPassIntervalMs } : {}),
    ...(file.fileMode !== undefined ? { fileMode: file.fileMode } : {}),
    ...(file.directoryMode !== undefined ? { directoryMode: file.directoryMode } : {}),
    ...(values['reset-state-log'] !== undefined ? { resetStateLogs: values['reset-state-log'] } : {}),
    ...definedOnly({ groupRetentionMs: integerFlag('group-retention-ms', values['group-retention-ms'], 1) }),
    ...(producerIdleExpiryMs !== undefined ? { producerIdleExpiryMs } : {}),
    ...(producersMax !== undefined ? { producersMax } : {}),
    ...(file.delaySegmentBytes !== undefined ? { delaySegmentBytes: file.delaySegmentBytes } : {}),
    ...(file.delayTransactionsKeptMax !== undefined
      ? { delayTransactionsKeptMax: file.delayTransactionsKeptMax }
      : {}),
  });
  broker.scrubber.onFinding((finding) => {
    process.stderr.write(
      `spillway: scrub found damage in ${finding.topic}/${finding.partition}: ${finding.file} at position ${finding.position}, offsets ${finding.baseOffset}..${finding.nextOffset - 1} (${finding.reason}); data left as is, see docs/OPERATIONS.md\n`,
    );
  });
  let server: Awaited<ReturnType<typeof broker.listen>>;
  try {
    server = await broker.listen({
      host,
      port,
      allowedOrigins: [...(file.allowedOrigins ?? []), ...(values['allow-origin'] ?? [])],
      allowedHosts: [...(file.allowedHosts ?? []), ...(values['allow-host'] ?? [])],
      ...(auth !== undefined ? { auth } : {}),
      ...(tlsCert !== undefined && tlsKey !== undefined
        ? { tls: { certFile: tlsCert, keyFile: tlsKey } }
        : {}),
      ...definedOnly({
        memoryBudgetBytes,
        memoryCeilingBytes: file.memoryCeilingBytes,
        maxConnectionsPerAddress:
          integerFlag('max-connections-per-address', values['max-connections-per-address'], 1) ??
          file.maxConnectionsPerAddress,
        handshakeTimeoutMs:
          integerFlag('handshake-timeout-ms', values['handshake-timeout-ms']) ?? file.handshakeTimeoutMs,
        httpBodyBudgetBytes: file.httpBodyBudgetBytes,
        httpSendBudgetBytes: file.httpSendBudgetBytes,
        httpBodyTimeoutMs: file.httpBodyTimeoutMs,
      }),
    });
  } catch (error) {
    await broker.close();
    throw error;
  }
  // The open report: one line per finding (with its fix) and a summary, on stderr, once listening.
  const { findingLine, reportSummary } = await import('../../broker/open-report.js');
  for (const finding of broker.openReport.findings) {
    const fix = finding.severity === 'info' ? '' : ` (fix: ${finding.fix})`;
    process.stderr.write(`spillway: ${findingLine(finding)}${fix}\n`);
  }
  process.stderr.write(`spillway: ${reportSummary(broker.openReport)}\n`);
  const { isLoopbackAddress } = await import('../../server/request-guard.js');
  if (!isLoopbackAddress(host) && auth === undefined) {
    process.stderr.write(
      `spillway: warning: listening on ${host}, reachable from other machines, without authentication (--auth-file): anyone who reaches the port can read, write and delete every topic\n`,
    );
  }
  if (auth !== undefined) {
    process.stderr.write(
      `spillway: authentication on: ${auth.principals.size} principals from ${authFile}\n`,
    );
  }
  process.stdout.write(`spillway listening on ${server.url}\n`);
  // SIGHUP reloads the auth file; a file that does not load keeps the previous one.
  const reloadAuth = () => {
    if (authFile === undefined) {
      process.stderr.write('spillway: SIGHUP: no --auth-file to reload\n');
      return;
    }
    let next: ReturnType<typeof loadAuthFile>;
    try {
      next = loadAuthFile(authFile);
    } catch (error) {
      process.stderr.write(
        `spillway: auth file reload failed, the previous one stays in force: ${error instanceof Error ? error.message : String(error)}\n`,
      );
      return;
    }
    const closed = server.reloadAuth(next);
    process.stderr.write(
      `spillway: auth file reloaded: ${next.principals.size} principals from ${authFile}; ${closed} connection(s) closed\n`,
    );
  };
  process.on('SIGHUP', reloadAuth);
  await new Promise<void>((resolve) => {
    const stop = () => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      resolve();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
  process.off('SIGHUP', reloadAuth);
  process.stderr.write('spillway: shutting down\n');
  await server.close();
  await broker.close();
  return 0;
}

/**
 * `--cluster etcd://H:P --broker-id N [--advertise ws://H:P]` (or the config file's `cluster`,
 * `brokerId`, `advertise`, `clusterName`, `clusterSessionTimeoutMs`): the cluster membership, or
 * undefined for a single broker. `--advertise` defaults to the listen address, which must then be
 * reachable by the other brokers (not 0.0.0.0). Mistakes are usage errors (exit 2).
 */
function clusterFlags(
  values: {
    cluster?: string | undefined;
    'broker-id'?: string | undefined;
    advertise?: string | undefined;
    'cluster-token-file'?: string | undefined;
  },
  file: BrokerConfigFile,
  host: string,
  port: number,
  authenticated: boolean,
): BrokerClusterOptions | undefined {
  const etcd = values.cluster ?? file.cluster;
  const brokerId = integerFlag('broker-id', values['broker-id']) ?? file.brokerId;
  const advertiseGiven = values.advertise ?? file.advertise;
  const tokenFile = values['cluster-token-file'] ?? file.clusterTokenFile;
  if (etcd === undefined) {
    if (brokerId !== undefined || advertiseGiven !== undefined || tokenFile !== undefined) {
      throw new UsageError(
        '--broker-id, --advertise and --cluster-token-file go with --cluster etcd://host:port',
      );
    }
    return undefined;
  }
  const token = clusterToken(tokenFile);
  if (authenticated && token === undefined) {
    throw new UsageError(
      '--cluster with --auth-file needs --cluster-token-file FILE (or SPILLWAY_CLUSTER_TOKEN): the token this broker presents to the others, a principal with cluster admin',
    );
  }
  if (brokerId === undefined) throw new UsageError('--cluster needs --broker-id N (unique in the cluster)');
  if (advertiseGiven === undefined && (host === '0.0.0.0' || host === '::')) {
    throw new UsageError(
      `--cluster with --host ${host} needs --advertise ws://host:port (an address the other brokers reach)`,
    );
  }
  const advertise = advertiseGiven ?? `ws://${host.includes(':') ? `[${host}]` : host}:${port}`;
  const options: BrokerClusterOptions = {
    etcd,
    brokerId,
    advertise,
    ...(file.clusterName !== undefined ? { name: file.clusterName } : {}),
    ...(file.clusterSessionTimeoutMs !== undefined ? { sessionTimeoutMs: file.clusterSessionTimeoutMs } : {}),
    ...(token !== undefined ? { token } : {}),
  };
  return checkedClusterOptions(options);
}

/** The broker-to-broker token: the first line of `--cluster-token-file`, else SPILLWAY_CLUSTER_TOKEN. */
function clusterToken(file: string | undefined): string | undefined {
  if (file === undefined) {
    const fromEnvironment = process.env['SPILLWAY_CLUSTER_TOKEN'];
    return fromEnvironment === undefined || fromEnvironment === '' ? undefined : fromEnvironment;
  }
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new UsageError(`--cluster-token-file ${file}: ${(error as Error).message}`);
  }
  const token = text.split('\n')[0]!.trim();
  if (token === '') throw new UsageError(`--cluster-token-file ${file} is empty`);
  return token;
}

function checkedClusterOptions(options: BrokerClusterOptions): BrokerClusterOptions {
  try {
    validateClusterOptions(options);
  } catch (error) {
    if (error instanceof SpillwayError && error.code === 'INVALID_ARGUMENT')
      throw new UsageError(error.message);
    throw error;
  }
  return options;
}
