/**
 * `spillway group list` and `spillway group describe G`: one JSON document. describe shows the mode,
 * generation, members with their assignment, and per partition the holder, committed offset, log end
 * and lag (broadcast: one row per member and partition).
 */
import { parseArgs } from 'node:util';
import { Spillway } from '../../client/index.js';
import { brokerUrlFlag, UsageError } from '../cli-error.js';

export const groupUsage = `usage: spillway group list
       spillway group describe GROUP
  both take --broker URL (default ws://127.0.0.1:7070)`;

export async function runGroup(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: { broker: { type: 'string', default: 'ws://127.0.0.1:7070' } },
    strict: true,
    allowPositionals: true,
  });
  const [action, name, ...rest] = positionals;
  if (rest.length > 0) throw new UsageError(`unexpected argument '${rest[0]}'`);
  if (action !== 'list' && action !== 'describe')
    throw new UsageError('group needs an action: list or describe');
  if (action === 'describe' && name === undefined) throw new UsageError('group describe needs a GROUP');
  if (action === 'list' && name !== undefined) throw new UsageError('group list takes no GROUP');
  const sw = await Spillway.connect(brokerUrlFlag(values.broker));
  try {
    const result = action === 'list' ? await sw.admin.listGroups() : await sw.admin.describeGroup(name!);
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  } finally {
    await sw.close();
  }
  return 0;
}
