import { describe, expect, it } from 'vitest';
import {
  isInternalTopicName,
  isValidTopicName,
  validateTopicName,
  validateUserTopicName,
} from '../../src/broker/topic-name.js';
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

describe('validateUserTopicName', () => {
  it('refuses the internal namespace and the suffixes the broker gives to directories it sets aside', () => {
    for (const name of ['__metadata', '__x', 'a.deleted-1', 'orders.orphan-1700000000000', '3.stray-42']) {
      expect(
        thrownCode(() => validateUserTopicName(name)),
        name,
      ).toBe('INVALID_TOPIC_NAME');
    }
    for (const name of ['_x', 'a__b', 'a.deleted', 'a.deleted-x', 'deleted-1', 'a.deleted-1b']) {
      expect(
        thrownCode(() => validateUserTopicName(name)),
        name,
      ).toBe('none');
    }
    expect(isInternalTopicName('__metadata')).toBe(true);
    expect(isInternalTopicName('_metadata')).toBe(false);
  });
});
