import { describe, expect, it } from 'vitest';
import { isValidTopicName, validateTopicName } from '../../src/broker/topic-name.js';
import { topicNameLengthMax } from '../../src/limits.js';
import { thrownCode } from './helpers.js';

describe('validateTopicName', () => {
  it('accepts letters, digits, dot, underscore and dash up to the length limit', () => {
    for (const name of [
      'orders',
      'a',
      'Orders.v2_eu-west',
      '...',
      '-',
      '_',
      'x'.repeat(topicNameLengthMax),
    ]) {
      expect(isValidTopicName(name), name).toBe(true);
    }
  });

  it('rejects empty, too long, odd characters, "." and ".." with INVALID_TOPIC_NAME', () => {
    const bad: unknown[] = [
      '',
      'x'.repeat(topicNameLengthMax + 1),
      '.',
      '..',
      'a/b',
      'a b',
      'é',
      'a\0',
      '../x',
      42,
      undefined,
    ];
    for (const name of bad) {
      expect(
        thrownCode(() => validateTopicName(name)),
        String(name),
      ).toBe('INVALID_TOPIC_NAME');
    }
  });
});
