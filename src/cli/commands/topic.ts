/** `spillway topic create|list|describe|delete|add-partitions`. Output: one JSON document. */
import { parseArgs } from 'node:util';
import { Spillway } from '../../client/index.js';
import { type Durability, durabilities } from '../../protocol/types.js';
import {
  attachNegativeValues,
  brokerUrlFlag,
  connectionFlags,
  connectionOptions,
  integerFlag,
  UsageError,
} from '../cli-error.js';

export const topicUsage = `usage: spillway topic create NAME [--partitions N] [--durability none|interval|always] [--retention-ms N]
                            [--retention-bytes N] [--segment-bytes N] [--dedup-window-ms N]
                            [--replication-factor N] [--min-insync N]
       spillway topic list [--internal]
       spillway topic describe NAME
       spillway topic delete NAME
       spillway topic add-partitions NAME --count N
  all take --broker URL (default ws://127.0.0.1:7070), --token T (or SPILLWAY_TOKEN), --ca-file PEM
  --dedup-window-ms N: msg-id dedup window, 0 (default: off) to 604800000 (7 days)
  --replication-factor N, --min-insync N: in a cluster, replicas per partition (default min(3, brokers))
    and in-sync replicas an acks 'all' produce needs (default min(2, replication factor))`;

function print(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

export async function runTopic(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: attachNegativeValues(argv, ['retention-ms', 'retention-bytes']),
    options: {
      broker: { type: 'string', default: 'ws://127.0.0.1:7070' },
      ...connectionFlags,
      partitions: { type: 'string' },
      durability: { type: 'string' },
      'retention-ms': { type: 'string' },
      'retention-bytes': { type: 'string' },
      'segment-bytes': { type: 'string' },
      'dedup-window-ms': { type: 'string' },
      'replication-factor': { type: 'string' },
      'min-insync': { type: 'string' },
      count: { type: 'string' },
      internal: { type: 'boolean' },
    },
    strict: true,
    allowPositionals: true,
  });
  const [action, name, ...rest] = positionals;
  if (rest.length > 0) throw new UsageError(`unexpected argument '${rest[0]}'`);
  const needsName = action !== 'list';
  if (action === undefined) throw new UsageError('topic needs an action');
  if (!['create', 'list', 'describe', 'delete', 'add-partitions'].includes(action)) {
    throw new UsageError(`unknown topic action '${action}'`);
  }
  if (needsName && name === undefined) throw new UsageError(`topic ${action} needs a topic NAME`);
  if (action === 'list' && name !== undefined) throw new UsageError('topic list takes no NAME');
  if (action !== 'list' && values.internal !== undefined)
    throw new UsageError('--internal is for topic list');
  for (const flag of ['replication-factor', 'min-insync'] as const) {
    if (action !== 'create' && values[flag] !== undefined)
      throw new UsageError(`--${flag} is for topic create`);
  }
  if (values.durability !== undefined && !durabilities.includes(values.durability as Durability)) {
    throw new UsageError(`--durability must be one of ${durabilities.join(', ')}`);
  }
  const count = integerFlag('count', values.count, 1);
  if (action === 'add-partitions' && count === undefined)
    throw new UsageError('topic add-partitions needs --count N');

  const sw = await Spillway.connect(brokerUrlFlag(values.broker), connectionOptions(values));
  try {
    switch (action) {
      case 'create': {
        const config = {
          partitions: integerFlag('partitions', values.partitions, 1),
          durability: values.durability as Durability | undefined,
          retentionMs: integerFlag('retention-ms', values['retention-ms'], -1),
          retentionBytes: integerFlag('retention-bytes', values['retention-bytes'], -1),
          segmentBytes: integerFlag('segment-bytes', values['segment-bytes'], 1),
          dedupWindowMs: integerFlag('dedup-window-ms', values['dedup-window-ms'], 0),
          replicationFactor: integerFlag('replication-factor', values['replication-factor'], 1),
          minInSyncReplicas: integerFlag('min-insync', values['min-insync'], 1),
        };
        const defined = Object.fromEntries(Object.entries(config).filter(([, v]) => v !== undefined));
        print(await sw.admin.createTopic(name!, defined));
        break;
      }
      case 'list':
        print(await sw.admin.listTopics({ internal: values.internal === true }));
        break;
      case 'describe':
        print(await sw.admin.describeTopic(name!));
        break;
      case 'delete':
        await sw.admin.deleteTopic(name!);
        print({ deleted: name });
        break;
      case 'add-partitions':
        print(await sw.admin.addPartitions(name!, count!));
        break;
    }
  } finally {
    await sw.close();
  }
  return 0;
}
