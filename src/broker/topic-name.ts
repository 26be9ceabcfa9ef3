/**
 * Topic names. A name is also the name of the topic's directory (`dataDir/topics/<name>/`), so it is
 * restricted to characters every file system accepts: 1..topicNameLengthMax characters of
 * [a-zA-Z0-9._-], and neither '.' nor '..' (they name directories already).
 */
import { InvalidTopicNameError } from '../errors.js';
import { topicNameLengthMax } from '../limits.js';

const topicNamePattern = /^[a-zA-Z0-9._-]+$/;

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
