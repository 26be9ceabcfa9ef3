/**
 * `spillway produce TOPIC`: one message per stdin line (or `--value V` for one). Prints
 * `{"partition":P,"offset":O}` per message, in input order, each only after the broker acknowledged
 * it. Batches and pipelines under the hood: sends are not awaited one by one; a bounded window of
 * unacknowledged messages keeps memory flat however long the input is.
 */
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { Spillway } from '../../client/index.js';
import { brokerUrlFlag, integerFlag, UsageError } from '../cli-error.js';

export const produceUsage = `usage: spillway produce TOPIC [--key K] [--partition P] [--value V] [--broker URL]
                        [--delay-ms N | --deliver-at ISO|MS]
  --delay-ms N        deliver each message N ms after it is sent (delayed message)
  --deliver-at T      deliver at T: an ISO 8601 time or epoch ms
  (a delayed message prints its offset in __delay, where it waits, with "delayed":true)
  (--msg-id arrives with msg-id dedup)`;

/** --deliver-at: epoch ms (digits) or an ISO 8601 time. */
function deliverAtFlag(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const ms = /^\d{1,16}$/.test(text) ? Number(text) : Date.parse(text);
  if (!Number.isSafeInteger(ms) || ms < 0) {
    throw new UsageError(`--deliver-at must be an ISO 8601 time or epoch ms, got '${text}'`);
  }
  return ms;
}

/** Messages sent but not yet printed; reading stdin pauses beyond this. */
const unprintedMessagesMax = 100_000;
/**
 * Bytes of those messages (lines) beyond which reading pauses too: well under what the producer
 * holds before it refuses sends (twice its bufferMemoryBytes), so long lines never meet BACKPRESSURE.
 */
const unprintedBytesMax = 16 * 1024 * 1024;
/** The batch size the command aims at, unless the topic's segments are smaller. */
const batchBytesTarget = 256 * 1024;

export async function runProduce(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: {
      broker: { type: 'string', default: 'ws://127.0.0.1:7070' },
      key: { type: 'string' },
      partition: { type: 'string' },
      value: { type: 'string' },
      'delay-ms': { type: 'string' },
      'deliver-at': { type: 'string' },
      'msg-id': { type: 'string' },
    },
    strict: true,
    allowPositionals: true,
  });
  if (positionals.length !== 1) throw new UsageError('produce needs exactly one TOPIC');
  const topic = positionals[0]!;
  if (values['msg-id'] !== undefined) throw new UsageError('--msg-id is not supported by this version yet');
  if (values['delay-ms'] !== undefined && values['deliver-at'] !== undefined) {
    throw new UsageError('give --delay-ms or --deliver-at, not both');
  }
  const partition = integerFlag('partition', values.partition, 0);
  const delayMs = integerFlag('delay-ms', values['delay-ms'], 0);
  const deliverAt = deliverAtFlag(values['deliver-at']);
  const delayedSuffix = delayMs !== undefined || deliverAt !== undefined ? ',"delayed":true' : '';
  const sw = await Spillway.connect(brokerUrlFlag(values.broker));
  // A batch must fit one segment of the topic: aim at half a segment when segments are small.
  let batchBytes = batchBytesTarget;
  try {
    const description = await sw.admin.describeTopic(topic);
    batchBytes = Math.max(
      16 * 1024,
      Math.min(batchBytesTarget, Math.floor(description.config.segmentBytes / 2)),
    );
  } catch {
    // Unknown topic and the like: the first send reports it.
  }
  const producer = sw.producer({ lingerMs: 2, batchBytes });
  const pending: Array<Promise<{ partition: number; offset: number }>> = [];
  const pendingBytes: number[] = [];
  let unprintedBytes = 0;
  let head = 0;
  let output = '';
  const flushOutput = () => {
    if (output.length > 0) {
      process.stdout.write(output);
      output = '';
    }
  };
  const printReady = async (all: boolean) => {
    while (
      head < pending.length &&
      (all || pending.length - head >= unprintedMessagesMax || unprintedBytes >= unprintedBytesMax)
    ) {
      const ack = await pending[head]!;
      pending[head] = undefined as never;
      unprintedBytes -= pendingBytes[head]!;
      head++;
      output += `{"partition":${ack.partition},"offset":${ack.offset}${delayedSuffix}}\n`;
      if (output.length > 64 * 1024) flushOutput();
    }
    if (head > 4096 && head * 2 > pending.length) {
      pending.splice(0, head);
      pendingBytes.splice(0, head);
      head = 0;
    }
  };
  const send = (value: string) => {
    const message: { value: string; key?: string; partition?: number; delayMs?: number; deliverAt?: number } =
      { value };
    if (values.key !== undefined) message.key = values.key;
    if (partition !== undefined) message.partition = partition;
    if (delayMs !== undefined) message.delayMs = delayMs;
    if (deliverAt !== undefined) message.deliverAt = deliverAt;
    const promise = producer.send(topic, message);
    promise.catch(() => undefined); // Reported in order by printReady.
    pending.push(promise);
    pendingBytes.push(value.length);
    unprintedBytes += value.length;
  };
  try {
    if (values.value !== undefined) {
      send(values.value);
    } else {
      const lines = createInterface({ input: process.stdin, crlfDelay: Number.POSITIVE_INFINITY });
      for await (const line of lines) {
        send(line);
        if (pending.length - head >= unprintedMessagesMax || unprintedBytes >= unprintedBytesMax) {
          await printReady(false);
        }
      }
    }
    await producer.flush();
    await printReady(true);
    flushOutput();
  } finally {
    flushOutput();
    await producer.close().catch(() => undefined);
    await sw.close();
  }
  return 0;
}
