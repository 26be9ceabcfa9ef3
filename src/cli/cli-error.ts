import { readFileSync } from 'node:fs';

/** A usage mistake on the command line: printed with the usage text, exit code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** Parses a non-negative integer flag value, or throws a UsageError naming the flag. */
export function integerFlag(name: string, value: string | undefined, min = 0): number | undefined {
  if (value === undefined) return undefined;
  if (!/^-?\d+$/.test(value)) throw new UsageError(`--${name} must be an integer, got '${value}'`);
  const parsed = Number(value);
  if (!Number.isSafeInteger(parsed) || parsed < min)
    throw new UsageError(`--${name} must be an integer >= ${min}`);
  return parsed;
}

/** Checks a --broker value: a ws:// or wss:// URL (anything else is a usage mistake, exit 2). */
export function brokerUrlFlag(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new UsageError(`--broker must be a ws:// URL, got '${value}'`);
  }
  if (!['ws:', 'wss:', 'http:', 'https:'].includes(url.protocol)) {
    throw new UsageError(`--broker must be a ws:// or wss:// URL, got '${value}'`);
  }
  return value;
}

/**
 * node:util parseArgs refuses an option value that starts with '-' (`--retention-ms -1` is
 * "ambiguous"), yet -1 is a documented value of the retention options. Rewrites `--name -N` into
 * `--name=-N` for the given options when the value is a negative integer, before parseArgs runs.
 */
export function attachNegativeValues(argv: readonly string[], names: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const argument = argv[i]!;
    const value = argv[i + 1];
    if (names.includes(argument.replace(/^--/, '')) && value !== undefined && /^-\d+$/.test(value)) {
      out.push(`${argument}=${value}`);
      i++;
    } else {
      out.push(argument);
    }
  }
  return out;
}

/** The options every client command takes besides --broker (docs/SECURITY.md). */
export const connectionFlags = {
  token: { type: 'string' },
  'ca-file': { type: 'string' },
} as const;

/** Usage text of connectionFlags. */
export const connectionFlagsUsage =
  '--token T (or SPILLWAY_TOKEN) authenticates to a broker with --auth-file; --ca-file PEM trusts a wss:// broker certificate';

/**
 * The client options of --token (else the SPILLWAY_TOKEN environment variable) and --ca-file: the
 * token as given, the CA file's contents. A file that cannot be read is a usage mistake.
 */
export function connectionOptions(values: { token?: string | undefined; 'ca-file'?: string | undefined }): {
  token?: string;
  ca?: Buffer;
} {
  const token = values.token ?? process.env['SPILLWAY_TOKEN'];
  const options: { token?: string; ca?: Buffer } = {};
  if (token !== undefined && token !== '') options.token = token;
  const caFile = values['ca-file'];
  if (caFile !== undefined) {
    try {
      options.ca = readFileSync(caFile);
    } catch (error) {
      throw new UsageError(`cannot read --ca-file ${caFile}: ${(error as Error).message}`);
    }
  }
  return options;
}
