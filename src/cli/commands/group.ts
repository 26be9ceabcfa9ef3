/**
 * `spillway group list` and `spillway group describe G`: one JSON document. describe shows the mode,
 * generation, members with their assignment, and per partition the holder, committed offset, log end
 * and lag (broadcast: one row per member and partition); for a queue group (shared, key_shared) its
 * queues per topic: settings, receiving members, and per partition the ack floor, backlog, in flight
 * and scheduled. list shows both kinds, one row each.
 */
import { parseArgs } from 'node:util';
import { Spillway } from '../../client/index.js';
import { queueGroupSummary } from '../../protocol/queue-api.js';
import { brokerUrlFlag, connectionFlags, connectionOptions, UsageError } from '../cli-error.js';

export const groupUsage = `usage: spillway group list
       spillway group describe GROUP
  both take --broker URL (default ws://127.0.0.1:7070), --token T (or SPILLWAY_TOKEN), --ca-file PEM`;

/** Group and broadcast groups (the coordinator's), then queue groups (shared, key_shared) by topic. */
async function listAll(sw: Spillway): Promise<unknown[]> {
  const [groups, queues] = await Promise.all([sw.admin.listGroups(), sw.admin.describeQueues()]);
  return [...groups, ...queues.map(queueGroupSummary)];
}

/** The coordinator's description of `group`, or its queue groups; UNKNOWN_GROUP when it is neither. */
async function describeAny(sw: Spillway, group: string): Promise<unknown> {
  try {
    return await sw.admin.describeGroup(group);
  } catch (error) {
    if ((error as { code?: string }).code !== 'UNKNOWN_GROUP') throw error;
    const queues = await sw.admin.describeQueues(group);
    if (queues.length === 0) throw error;
    return { group, mode: queues[0]!.mode, queues };
  }
}

export async function runGroup(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: { broker: { type: 'string', default: 'ws://127.0.0.1:7070' }, ...connectionFlags },
    strict: true,
    allowPositionals: true,
  });
  const [action, name, ...rest] = positionals;
  if (rest.length > 0) throw new UsageError(`unexpected argument '${rest[0]}'`);
  if (action !== 'list' && action !== 'describe')
    throw new UsageError('group needs an action: list or describe');
  if (action === 'describe' && name === undefined) throw new UsageError('group describe needs a GROUP');
  if (action === 'list' && name !== undefined) throw new UsageError('group list takes no GROUP');
  const sw = await Spillway.connect(brokerUrlFlag(values.broker), connectionOptions(values));
  try {
    const result = action === 'list' ? await listAll(sw) : await describeAny(sw, name!);
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  } finally {
    await sw.close();
  }
  return 0;
}
