/**
 * `spillway auth`: makes the entries of an auth file (docs/SECURITY.md) so no token is ever written
 * down in plain text:
 * - `auth add NAME --file FILE [--allow RESOURCE:NAME:OP[,OP...]]... [quotas]` creates a principal
 *   with a new random token, stores only its scrypt hash in FILE (created 0600 if missing; written
 *   to a temporary file and renamed), and prints the token once on stdout;
 * - `auth hash-token` reads a token (`NAME.SECRET`) from stdin and prints the principal entry with its
 *   hash, for tokens made elsewhere (a secret manager).
 * The broker reads the file at start: restart it after a change.
 */
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { parseAccessRule } from '../../protocol/access-control.js';
import { parseAuthConfig } from '../../server/auth/auth-file.js';
import { hashSecret, newToken, splitToken } from '../../server/auth/token-hash.js';
import { integerFlag, UsageError } from '../cli-error.js';

export const authUsage = `usage: spillway auth add NAME --file FILE [--allow RESOURCE:NAME:OP[,OP...]]... [--replace]
                       [--produce-bytes-per-second N] [--fetch-bytes-per-second N] [--max-connections N]
       spillway auth hash-token < token.txt
  add: creates principal NAME with a new token in FILE (only its scrypt hash is stored) and prints the
       token once. RESOURCE is topic, group or cluster; NAME an exact name, a prefix ending in * or *;
       OP produce, consume, describe or admin. Example: --allow 'topic:orders.*:produce,describe'
  hash-token: reads NAME.SECRET on stdin, prints the principal entry (name, tokenHash) as JSON`;

function parseAllow(text: string): unknown {
  const parts = text.split(':');
  if (parts.length !== 3) {
    throw new UsageError(`--allow must be RESOURCE:NAME:OP[,OP...], got '${text}'`);
  }
  const [resource, name, operations] = parts as [string, string, string];
  try {
    return parseAccessRule({ resource, name, operations: operations.split(',') }, `--allow '${text}'`);
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

async function add(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: {
      file: { type: 'string' },
      allow: { type: 'string', multiple: true },
      replace: { type: 'boolean', default: false },
      'produce-bytes-per-second': { type: 'string' },
      'fetch-bytes-per-second': { type: 'string' },
      'max-connections': { type: 'string' },
    },
    allowPositionals: true,
    strict: true,
  });
  const [name, ...extra] = positionals;
  if (name === undefined || extra.length > 0) throw new UsageError('auth add takes one NAME');
  const file = values.file;
  if (file === undefined) throw new UsageError('auth add needs --file FILE');
  let root: { principals: Array<Record<string, unknown>> } = { principals: [] };
  let text: string | null = null;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  if (text !== null) {
    const parsed = JSON.parse(text) as { principals: Array<Record<string, unknown>> };
    parseAuthConfig(parsed, `auth file ${file}`); // refuses a broken file before changing it
    root = parsed;
  }
  const existing = root.principals.findIndex((entry) => entry['name'] === name);
  if (existing !== -1 && !values.replace) {
    throw new UsageError(`principal '${name}' is already in ${file} (--replace gives it a new token)`);
  }
  const token = newToken(name);
  const quotas: Record<string, number> = {};
  for (const [flag, key] of [
    ['produce-bytes-per-second', 'produceBytesPerSecond'],
    ['fetch-bytes-per-second', 'fetchBytesPerSecond'],
    ['max-connections', 'maxConnections'],
  ] as const) {
    const value = integerFlag(flag, values[flag], 1);
    if (value !== undefined) quotas[key] = value;
  }
  const entry: Record<string, unknown> = {
    name,
    tokenHash: await hashSecret(splitToken(token)!.secret),
    allow: (values.allow ?? []).map(parseAllow),
    ...(Object.keys(quotas).length > 0 ? { quotas } : {}),
  };
  if (existing === -1) root.principals.push(entry);
  else root.principals[existing] = entry;
  parseAuthConfig(root, `auth file ${file}`);
  const temporary = `${file}.tmp-${process.pid}`;
  writeFileSync(temporary, `${JSON.stringify(root, null, 2)}\n`, { mode: 0o600 });
  renameSync(temporary, file);
  process.stderr.write(
    `spillway auth: principal '${name}' written to ${file}; its token follows (shown once; restart the broker to load it)\n`,
  );
  process.stdout.write(`${token}\n`);
  return 0;
}

async function hashToken(): Promise<number> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  const token = Buffer.concat(chunks).toString('utf8').trim();
  const parts = splitToken(token);
  if (parts === null)
    throw new UsageError('stdin must hold one token NAME.SECRET (NAME: letters, digits, . _ -)');
  const entry = { name: parts.name, tokenHash: await hashSecret(parts.secret), allow: [] };
  process.stdout.write(`${JSON.stringify(entry)}\n`);
  return 0;
}

export async function runAuth(argv: string[]): Promise<number> {
  const [action, ...rest] = argv;
  if (action === 'add') return add(rest);
  if (action === 'hash-token') return hashToken();
  throw new UsageError(`unknown auth action '${action ?? ''}'`);
}
