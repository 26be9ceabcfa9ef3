/**
 * Checks of the options every consumer kind (log, group, queue) takes, with the same messages:
 * a bad value is an INVALID_ARGUMENT naming the option.
 */
import { InvalidArgumentError } from '../errors.js';
import { batchBytesMax, fetchMaxWaitMsMax } from '../limits.js';

/** `value` (or `fallback` when undefined), which must be an integer in [min, max]. */
export function consumerIntegerOption(
  value: unknown,
  name: string,
  min: number,
  max: number,
  fallback: number,
): number {
  const resolved = value ?? fallback;
  if (typeof resolved !== 'number' || !Number.isSafeInteger(resolved) || resolved < min || resolved > max) {
    throw new InvalidArgumentError(
      `consumer option ${name} must be an integer in [${min}, ${max}], got ${String(value)}`,
    );
  }
  return resolved;
}

/** The `topics` option: a non-empty array of distinct topic names (a copy). */
export function consumerTopicsOption(topics: unknown): string[] {
  if (
    !Array.isArray(topics) ||
    topics.length === 0 ||
    !topics.every((topic) => typeof topic === 'string' && topic.length > 0)
  ) {
    throw new InvalidArgumentError('consumer option topics must be a non-empty array of topic names');
  }
  if (new Set(topics).size !== topics.length)
    throw new InvalidArgumentError('consumer option topics repeats a topic');
  return [...(topics as string[])];
}

/** The fetch options the log and group consumers share, resolved. */
export interface ConsumerFetchOptions {
  maxBytes: number;
  maxWaitMs: number;
  partitionBufferBytesMax: number;
  requestTimeoutMs: number;
}

/**
 * `maxBytes` (1..batchBytesMax), `maxWaitMs` (0..fetchMaxWaitMsMax), `partitionBufferBytesMax`
 * (default: maxBytes) and `requestTimeoutMs` of a fetching consumer, each checked, with `defaults`.
 */
export function consumerFetchOptions(
  options: Partial<Record<keyof ConsumerFetchOptions, unknown>>,
  defaults: { maxBytes: number; maxWaitMs: number; requestTimeoutMs: number },
): ConsumerFetchOptions {
  const maxBytes = consumerIntegerOption(options.maxBytes, 'maxBytes', 1, batchBytesMax, defaults.maxBytes);
  return {
    maxBytes,
    maxWaitMs: consumerIntegerOption(
      options.maxWaitMs,
      'maxWaitMs',
      0,
      fetchMaxWaitMsMax,
      defaults.maxWaitMs,
    ),
    partitionBufferBytesMax: consumerIntegerOption(
      options.partitionBufferBytesMax,
      'partitionBufferBytesMax',
      1,
      Number.MAX_SAFE_INTEGER,
      maxBytes,
    ),
    requestTimeoutMs: consumerIntegerOption(
      options.requestTimeoutMs,
      'requestTimeoutMs',
      1,
      Number.MAX_SAFE_INTEGER,
      defaults.requestTimeoutMs,
    ),
  };
}
