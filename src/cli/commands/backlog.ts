/**
 * `spillway backlog drain SRC --group G --into TMP --partitions N`: moves group G's unconsumed backlog
 * of SRC into TMP (client/backlog-drain.ts has the contract; docs/BACKLOG.md the recipe). Shows a
 * progress bar on stderr when stderr is a terminal; prints one JSON line with the final counts on
 * stdout. SIGINT/SIGTERM: stops taking messages, waits for the copies in flight, commits them, prints
 * the counts (`"interrupted": true`) and exits 130; a next run resumes. Any other stop (SIGKILL, lost
 * connection) is resumed the same way, without doubles.
 */
import { parseArgs } from 'node:util';
import { type DrainProgress, drainBacklog } from '../../client/backlog-drain.js';
import { Spillway } from '../../client/index.js';
import { brokerUrlFlag, connectionFlags, connectionOptions, integerFlag, UsageError } from '../cli-error.js';

export const backlogUsage = `usage: spillway backlog drain SRC --group G --into TMP --partitions N [--broker URL]
                              [--token T] [--ca-file PEM]
  copies group G's unconsumed messages of SRC (from its committed offsets to the end offsets now)
  into TMP (created with N partitions and SRC's durability when missing), keyed messages by key hash,
  then commits G's offsets on SRC. G's consumers must be stopped. Run it again to resume.`;

/** Width of the bar, in characters. */
const barWidth = 30;

function bar(progress: DrainProgress, startedAt: number): string {
  const done = progress.copied + progress.skipped;
  const fraction = progress.total === 0 ? 1 : Math.min(1, done / progress.total);
  const filled = Math.round(fraction * barWidth);
  const seconds = Math.max(0.001, (Date.now() - startedAt) / 1000);
  const rate = Math.round(progress.copied / seconds);
  return `\r[${'#'.repeat(filled)}${'-'.repeat(barWidth - filled)}] ${(fraction * 100).toFixed(1)}% ${done.toLocaleString('en-US')}/${progress.total.toLocaleString('en-US')} msg, ${rate.toLocaleString('en-US')} msg/s`;
}

export async function runBacklog(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: {
      broker: { type: 'string', default: 'ws://127.0.0.1:7070' },
      ...connectionFlags,
      group: { type: 'string' },
      into: { type: 'string' },
      partitions: { type: 'string' },
    },
    strict: true,
    allowPositionals: true,
  });
  const [action, source, ...rest] = positionals;
  if (action !== 'drain') throw new UsageError('backlog needs an action: drain');
  if (source === undefined) throw new UsageError('backlog drain needs a source topic SRC');
  if (rest.length > 0) throw new UsageError(`unexpected argument '${rest[0]}'`);
  if (values.group === undefined) throw new UsageError('backlog drain needs --group G');
  if (values.into === undefined) throw new UsageError('backlog drain needs --into TMP');
  const partitions = integerFlag('partitions', values.partitions, 1);
  if (partitions === undefined) throw new UsageError('backlog drain needs --partitions N');
  const sw = await Spillway.connect(brokerUrlFlag(values.broker), connectionOptions(values));
  const stop = new AbortController();
  const onSignal = (): void => stop.abort();
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const terminal = process.stderr.isTTY === true;
  const startedAt = Date.now();
  try {
    const result = await drainBacklog(sw, {
      source,
      group: values.group,
      into: values.into,
      partitions,
      signal: stop.signal,
      ...(terminal ? { onProgress: (progress) => process.stderr.write(bar(progress, startedAt)) } : {}),
    });
    if (terminal) process.stderr.write('\n');
    const seconds = Math.max(0.001, result.durationMs / 1000);
    process.stdout.write(
      `${JSON.stringify({
        source: result.source,
        group: result.group,
        into: result.into,
        partitions: result.partitions,
        created: result.created,
        total: result.total,
        copied: result.copied,
        skipped: result.skipped,
        interrupted: result.interrupted,
        durationMs: result.durationMs,
        messagesPerSecond: Math.round(result.copied / seconds),
      })}\n`,
    );
    return result.interrupted ? 130 : 0;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await sw.close();
  }
}
