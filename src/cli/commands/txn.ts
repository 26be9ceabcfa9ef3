/**
 * `spillway txn list`: the open (and committing) transactions of the broker, one JSON document:
 * `{ "transactions": [{ id, group, state, ageMs, checks, maxChecks, messages, ... }], "stats": {...} }`
 * (the same figures as `/metrics` and `GET /v1/transactions`).
 */
import { parseArgs } from 'node:util';
import { Spillway } from '../../client/index.js';
import { brokerUrlFlag, connectionFlags, connectionOptions, UsageError } from '../cli-error.js';

export const txnUsage = `usage: spillway txn list [--broker URL] [--token T] [--ca-file PEM]
  open transactions: id, producer group, state, age, check-backs made, messages held`;

export async function runTxn(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: { broker: { type: 'string', default: 'ws://127.0.0.1:7070' }, ...connectionFlags },
    strict: true,
    allowPositionals: true,
  });
  const [action, ...rest] = positionals;
  if (action !== 'list') throw new UsageError('txn needs an action: list');
  if (rest.length > 0) throw new UsageError(`unexpected argument '${rest[0]}'`);
  const sw = await Spillway.connect(brokerUrlFlag(values.broker), connectionOptions(values));
  try {
    const listed = await sw.admin.listTransactions();
    process.stdout.write(`${JSON.stringify(listed, null, 2)}\n`);
  } finally {
    await sw.close();
  }
  return 0;
}
