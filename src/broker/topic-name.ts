/**
 * Topic names. A name is also the name of the topic's directory (`dataDir/topics/<name>/`), so it is
 * restricted to characters every file system accepts: 1..topicNameLengthMax characters of
 * [a-zA-Z0-9._-], and neither '.' nor '..' (they name directories already).
 *
 * Reserved, refused for user topics:
 *  - names starting with `__`: internal topics, written only by the broker (its state logs, e.g.
 *    `__metadata`); hidden from `topic list` unless asked for, shown by describe and metrics.
 *  - names ending in `.deleted-<digits>`, `.orphan-<digits>` or `.stray-<digits>`: the broker renames
 *    directories to such names while deleting a topic or setting unknown directories aside
 *    (topic-directories.ts), so a topic of such a name would be mistaken for one of those.
 */
import { InvalidTopicNameError } from '../errors.js';
import { topicNameLengthMax } from '../limits.js';

const topicNamePattern = /^[a-zA-Z0-9._-]+$/;
/** Prefix of internal topic names. */
export const internalTopicPrefix = '__';
/** Suffixes the broker gives to directories it sets aside (topic-directories.ts asidePath). */
export const asideSuffixPattern = /\.(deleted|orphan|stray)-\d+$/;

/** True for names in the internal namespace (`__` prefix). */
export function isInternalTopicName(name: string): boolean {
  return name.startsWith(internalTopicPrefix);
}

/**
 * Throws InvalidTopicNameError unless `name` is a valid name for a topic a user creates: a valid
 * name (validateTopicName) outside the reserved namespaces.
 */
export function validateUserTopicName(name: unknown): asserts name is string {
  validateTopicName(name);
  if (isInternalTopicName(name)) {
    throw new InvalidTopicNameError(
      `topic name '${name}' starts with '${internalTopicPrefix}', which is reserved for internal topics`,
    );
  }
  if (asideSuffixPattern.test(name)) {
    throw new InvalidTopicNameError(
      `topic name '${name}' ends like a directory the broker sets aside (.deleted-, .orphan- or .stray- and digits): reserved`,
    );
  }
}

/** Throws InvalidTopicNameError (code INVALID_TOPIC_NAME) saying what is wrong with `name`. */
export function validateTopicName(name: unknown): asserts name is string {
  if (typeof name !== 'string') {
    throw new InvalidTopicNameError(`a topic name must be a string, got ${typeof name}`);
  }
  if (name.length === 0) throw new InvalidTopicNameError('a topic name must not be empty');
  if (name.length > topicNameLengthMax) {
    throw new InvalidTopicNameError(
      `topic name of ${name.length} characters exceeds the limit ${topicNameLengthMax}`,
    );
  }
  if (!topicNamePattern.test(name)) {
    throw new InvalidTopicNameError(
      `topic name '${name}' may contain only ASCII letters, digits, '.', '_' and '-'`,
    );
  }
  if (name === '.' || name === '..') throw new InvalidTopicNameError(`'${name}' is not a valid topic name`);
}

export function isValidTopicName(name: unknown): name is string {
  try {
    validateTopicName(name);
    return true;
  } catch {
    return false;
  }
}
