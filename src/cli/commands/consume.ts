/**
 * `spillway consume TOPIC`: prints one JSON line per message:
 * `{"topic","partition","offset","key","value","headers","timestamp","deliveryCount"}` (key, value and
 * header values as UTF-8 text), and acks it once printed. Stops after --max-messages, or when no
 * message came for --idle-exit-ms, or on SIGINT/SIGTERM (then commits what was printed and leaves
 * the group). `--group G` joins group G: `--mode group` (the default) or `broadcast` (the member id is
 * `--member-id`, default `spillway-cli-<group>`), where `--from` applies only where G has no offset;
 * or `--mode shared` / `key_shared`: the group's per-message ack state on the broker.
 * Without a group, with --on-corrupt-batch skip, a batch failing its CRC32C check is passed over and
 * reported on stderr as one JSON line `{"skipped":{"topic","partition","firstOffset","nextOffset","reason"}}`;
 * the default (fail) stops with CORRUPT_BATCH.
 */
import { parseArgs } from 'node:util';
import { Spillway } from '../../client/index.js';
import { brokerUrlFlag, connectionFlags, connectionOptions, integerFlag, UsageError } from '../cli-error.js';

export const consumeUsage = `usage: spillway consume TOPIC [--group G [--mode group|broadcast|shared|key_shared] [--member-id ID]]
                        [--from earliest|latest] [--max-messages N] [--idle-exit-ms N] [--on-corrupt-batch fail|skip]
                        [--broker URL] [--token T] [--ca-file PEM]
  (acks each message after printing it; --member-id is for broadcast; --on-corrupt-batch skip is for reads without --group)`;

function text(bytes: Uint8Array | null): string | null {
  return bytes === null
    ? null
    : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8');
}

export async function runConsume(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: {
      broker: { type: 'string', default: 'ws://127.0.0.1:7070' },
      ...connectionFlags,
      group: { type: 'string' },
      mode: { type: 'string' },
      'member-id': { type: 'string' },
      from: { type: 'string', default: 'earliest' },
      'max-messages': { type: 'string' },
      'idle-exit-ms': { type: 'string' },
      'on-corrupt-batch': { type: 'string', default: 'fail' },
    },
    strict: true,
    allowPositionals: true,
  });
  if (positionals.length !== 1) throw new UsageError('consume needs exactly one TOPIC');
  const topic = positionals[0]!;
  if (values.from !== 'earliest' && values.from !== 'latest')
    throw new UsageError('--from must be earliest or latest');
  if (values.mode !== undefined && values.group === undefined) throw new UsageError('--mode needs --group');
  const mode = values.mode ?? 'group';
  if (mode !== 'group' && mode !== 'broadcast' && mode !== 'shared' && mode !== 'key_shared') {
    throw new UsageError('--mode must be group, broadcast, shared or key_shared');
  }
  if (values['member-id'] !== undefined && mode !== 'broadcast')
    throw new UsageError('--member-id is for --mode broadcast');
  const onCorruptBatch = values['on-corrupt-batch'];
  if (onCorruptBatch !== 'fail' && onCorruptBatch !== 'skip') {
    throw new UsageError('--on-corrupt-batch must be fail or skip');
  }
  if (onCorruptBatch === 'skip' && values.group !== undefined) {
    throw new UsageError('--on-corrupt-batch skip is for reads without --group');
  }
  const maxMessages = integerFlag('max-messages', values['max-messages'], 1);
  const idleExitMs = integerFlag('idle-exit-ms', values['idle-exit-ms'], 1);
  const sw = await Spillway.connect(brokerUrlFlag(values.broker), connectionOptions(values));
  const consumer =
    values.group === undefined
      ? sw.consumer({
          topics: [topic],
          from: values.from,
          onCorruptBatch,
          onSkippedBatch: (skipped) => process.stderr.write(`${JSON.stringify({ skipped })}\n`),
        })
      : mode === 'shared' || mode === 'key_shared'
        ? sw.consumer({ group: values.group, topics: [topic], mode })
        : sw.consumer({
            group: values.group,
            topics: [topic],
            mode,
            from: values.from,
            ...(mode === 'broadcast'
              ? { memberId: values['member-id'] ?? `spillway-cli-${values.group}` }
              : {}),
          });
  let idleTimer: NodeJS.Timeout | null = null;
  const armIdle = () => {
    if (idleExitMs === undefined) return;
    if (idleTimer) clearTimeout(idleTimer);
    idleTimer = setTimeout(() => void consumer.close(), idleExitMs);
  };
  const stop = () => void consumer.close();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  let count = 0;
  try {
    armIdle();
    for await (const message of consumer) {
      const headers: Record<string, string | null> = {};
      for (const [name, value] of Object.entries(message.headers)) headers[name] = text(value);
      process.stdout.write(
        `${JSON.stringify({
          topic: message.topic,
          partition: message.partition,
          offset: message.offset,
          key: text(message.key),
          value: text(message.value),
          headers,
          timestamp: message.timestamp,
          deliveryCount: message.deliveryCount,
        })}\n`,
      );
      await message.ack();
      count++;
      if (maxMessages !== undefined && count >= maxMessages) break;
      armIdle();
    }
  } finally {
    if (idleTimer) clearTimeout(idleTimer);
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
    await consumer.close();
    await sw.close();
  }
  return 0;
}
