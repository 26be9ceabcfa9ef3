/**
 * `spillway produce TOPIC`: one message per stdin line (or `--value V` for one). Prints
 * `{"partition":P,"offset":O}` per message, in input order, each only after the broker acknowledged
 * it. Lines are sent in chunks with producer.sendBatch (one promise per chunk; a chunk goes when it
 * is full or when the input pauses), pipelined: a bounded window of unacknowledged messages keeps
 * memory flat however long the input is. Uses the native CRC32C when the addon loads (optional).
 */
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { useClientCrc32c } from '../../client/client-crc32c.js';
import { type ProducerMessage, type SendResult, Spillway } from '../../client/index.js';
import { checkMsgId } from '../../protocol/msg-id.js';
import { brokerUrlFlag, connectionFlags, connectionOptions, integerFlag, UsageError } from '../cli-error.js';

export const produceUsage = `usage: spillway produce TOPIC [--key K] [--partition P] [--value V] [--msg-id ID] [--broker URL]
                        [--delay-ms N | --deliver-at ISO|MS] [--token T] [--ca-file PEM]
  --msg-id ID         the message's msgId (deduplicated within the topic's dedup window); with lines
                      from stdin, line N (from 1) gets ID-N, so running the same import again writes
                      nothing twice
  --delay-ms N        deliver each message N ms after it is sent (delayed message)
  --deliver-at T      deliver at T: an ISO 8601 time or epoch ms
  (a delayed message prints its offset in __delay, where it waits, with "delayed":true)`;

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
/** Lines per sendBatch call at most. */
const chunkMessagesMax = 1000;

/** Registers the addon's CRC32C with the client when the addon loads; the pure TypeScript one otherwise. */
async function useNativeCrc32c(): Promise<void> {
  try {
    const native = await import('../../native.js');
    useClientCrc32c(native.crc32c, `native ${native.crc32cImplementation()}`);
  } catch {
    // No addon (or not for this Node): the client's own CRC32C is correct, only slower.
  }
}

export async function runProduce(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: {
      broker: { type: 'string', default: 'ws://127.0.0.1:7070' },
      ...connectionFlags,
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
  if (values['delay-ms'] !== undefined && values['deliver-at'] !== undefined) {
    throw new UsageError('give --delay-ms or --deliver-at, not both');
  }
  const msgIdBase = values['msg-id'] === undefined ? undefined : checkMsgId(values['msg-id'], '--msg-id');
  const partition = integerFlag('partition', values.partition, 0);
  const delayMs = integerFlag('delay-ms', values['delay-ms'], 0);
  const deliverAt = deliverAtFlag(values['deliver-at']);
  const delayedSuffix = delayMs !== undefined || deliverAt !== undefined ? ',"delayed":true' : '';
  await useNativeCrc32c();
  const sw = await Spillway.connect(brokerUrlFlag(values.broker), connectionOptions(values));
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
  /** Per chunk sent: its sendBatch promise, its bytes and its message count. */
  const pending: Array<Promise<SendResult[]>> = [];
  const pendingBytes: number[] = [];
  let unprintedMessages = 0;
  let chunk: ProducerMessage[] = [];
  let chunkBytes = 0;
  let chunkTimer: NodeJS.Immediate | null = null;
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
      (all || unprintedMessages >= unprintedMessagesMax || unprintedBytes >= unprintedBytesMax)
    ) {
      const acks = await pending[head]!;
      pending[head] = undefined as never;
      unprintedBytes -= pendingBytes[head]!;
      unprintedMessages -= acks.length;
      head++;
      for (const ack of acks) {
        output += `{"partition":${ack.partition},"offset":${ack.offset}${delayedSuffix}}\n`;
        if (output.length > 64 * 1024) flushOutput();
      }
    }
    if (head > 4096 && head * 2 > pending.length) {
      pending.splice(0, head);
      pendingBytes.splice(0, head);
      head = 0;
    }
  };
  let lineNumber = 0;
  const sendChunk = () => {
    if (chunkTimer !== null) clearImmediate(chunkTimer);
    chunkTimer = null;
    if (chunk.length === 0) return;
    const promise = producer.sendBatch(topic, chunk);
    promise.catch(() => undefined); // Reported in order by printReady.
    pending.push(promise);
    pendingBytes.push(chunkBytes);
    chunk = [];
    chunkBytes = 0;
  };
  const send = (value: string, msgId?: string) => {
    const message: ProducerMessage = { value };
    if (values.key !== undefined) message.key = values.key;
    if (partition !== undefined) message.partition = partition;
    if (msgId !== undefined) message.msgId = msgId;
    if (delayMs !== undefined) message.delayMs = delayMs;
    if (deliverAt !== undefined) message.deliverAt = deliverAt;
    chunk.push(message);
    chunkBytes += value.length;
    unprintedBytes += value.length;
    unprintedMessages++;
    if (chunk.length >= chunkMessagesMax) sendChunk();
    else chunkTimer ??= setImmediate(sendChunk);
  };
  try {
    if (values.value !== undefined) {
      send(values.value, msgIdBase);
    } else {
      const lines = createInterface({ input: process.stdin, crlfDelay: Number.POSITIVE_INFINITY });
      for await (const line of lines) {
        lineNumber++;
        send(
          line,
          msgIdBase === undefined ? undefined : checkMsgId(`${msgIdBase}-${lineNumber}`, '--msg-id'),
        );
        if (unprintedMessages >= unprintedMessagesMax || unprintedBytes >= unprintedBytesMax) {
          sendChunk();
          await printReady(false);
        }
      }
    }
    sendChunk();
    await producer.flush();
    await printReady(true);
    flushOutput();
  } finally {
    if (chunkTimer !== null) clearImmediate(chunkTimer);
    flushOutput();
    await producer.close().catch(() => undefined);
    await sw.close();
  }
  return 0;
}
