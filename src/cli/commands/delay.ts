/**
 * `spillway delay stats`: the broker's delayed messages as one JSON document: pending by horizon
 * (due within a minute, an hour, a day, later), the next due time (epoch ms and ISO), counters since
 * the broker opened (scheduled, fired, dead-lettered) and the recent firing lateness.
 */
import { parseArgs } from 'node:util';
import { Spillway } from '../../client/index.js';
import { brokerUrlFlag, connectionFlags, connectionOptions, UsageError } from '../cli-error.js';

export const delayUsage = `usage: spillway delay stats [--broker URL] [--token T] [--ca-file PEM]
  pending delayed messages by horizon (<1 min, <1 h, <1 day, later) and the next due time`;

export async function runDelay(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: { broker: { type: 'string', default: 'ws://127.0.0.1:7070' }, ...connectionFlags },
    strict: true,
    allowPositionals: true,
  });
  const [action, ...rest] = positionals;
  if (action !== 'stats') throw new UsageError('delay needs an action: stats');
  if (rest.length > 0) throw new UsageError(`unexpected argument '${rest[0]}'`);
  const sw = await Spillway.connect(brokerUrlFlag(values.broker), connectionOptions(values));
  try {
    const stats = await sw.admin.delayStats();
    const nextDue = stats.nextDueMs === null ? null : new Date(stats.nextDueMs).toISOString();
    process.stdout.write(`${JSON.stringify({ ...stats, nextDue }, null, 2)}\n`);
  } finally {
    await sw.close();
  }
  return 0;
}
