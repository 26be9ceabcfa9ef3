/**
 * The shape of the CLI's one-action report commands (`spillway txn list`, `spillway delay stats`):
 * `[--broker URL] [--token T] [--ca-file PEM]`, exactly one action, no other argument; connects,
 * asks the broker once and prints the answer as one indented JSON document.
 */
import { parseArgs } from 'node:util';
import { Spillway } from '../../client/index.js';
import { brokerUrlFlag, connectionFlags, connectionOptions, UsageError } from '../cli-error.js';

export async function runReportCommand(
  argv: string[],
  command: string,
  action: string,
  report: (sw: Spillway) => Promise<unknown>,
): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: { broker: { type: 'string', default: 'ws://127.0.0.1:7070' }, ...connectionFlags },
    strict: true,
    allowPositionals: true,
  });
  const [given, ...rest] = positionals;
  if (given !== action) throw new UsageError(`${command} needs an action: ${action}`);
  if (rest.length > 0) throw new UsageError(`unexpected argument '${rest[0]}'`);
  const sw = await Spillway.connect(brokerUrlFlag(values.broker), connectionOptions(values));
  try {
    process.stdout.write(`${JSON.stringify(await report(sw), null, 2)}\n`);
  } finally {
    await sw.close();
  }
  return 0;
}
