/** Request validation of the wire protocol (shared by the WebSocket protocol and the HTTP API). */
import { describe, expect, it } from 'vitest';
import { clientIdLengthMax, partitionIndexMax, topicNameLengthMax } from '../../src/limits.js';
import {
  parseCreateTopic,
  parseFetch,
  parseHello,
  parseProduce,
  parseTopicConfig,
} from '../../src/protocol/messages.js';

const invalid = (message: RegExp) =>
  expect.objectContaining({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(message) });

describe('parseTopicConfig', () => {
  it('passes a dedupWindowMs on (the broker checks its range); refuses a non-integer', () => {
    for (const dedupWindowMs of [1, 60_000]) {
      expect(parseTopicConfig({ dedupWindowMs })).toEqual({ dedupWindowMs });
      expect(parseCreateTopic({ name: 't', config: { dedupWindowMs } })).toEqual({
        name: 't',
        config: { dedupWindowMs },
      });
    }
    expect(() => parseTopicConfig({ dedupWindowMs: 'soon' })).toThrow(
      invalid(/dedupWindowMs must be an integer/),
    );
  });

  it('accepts dedupWindowMs 0 or absent', () => {
    expect(parseTopicConfig({ dedupWindowMs: 0, partitions: 2 })).toEqual({
      dedupWindowMs: 0,
      partitions: 2,
    });
    expect(parseCreateTopic({ name: 't', config: { retentionMs: -1 } })).toEqual({
      name: 't',
      config: { retentionMs: -1 },
    });
  });
});

describe('request bounds come from src/limits.ts', () => {
  it('topic names, partition numbers and client ids', () => {
    const longest = 'n'.repeat(topicNameLengthMax);
    expect(parseCreateTopic({ name: longest }).name).toBe(longest);
    expect(() => parseCreateTopic({ name: `${longest}n` })).toThrow(invalid(/name/));
    expect(parseProduce({ topic: 't', partition: partitionIndexMax }).partition).toBe(partitionIndexMax);
    expect(() => parseProduce({ topic: 't', partition: partitionIndexMax + 1 })).toThrow(
      invalid(/partition/),
    );
    expect(() => parseFetch({ topic: `${longest}n`, partition: 0, offset: 0 })).toThrow(invalid(/topic/));
    const clientId = 'c'.repeat(clientIdLengthMax);
    expect(parseHello({ protocolVersion: 1, clientId }).clientId).toBe(clientId);
    expect(() => parseHello({ protocolVersion: 1, clientId: `${clientId}c` })).toThrow(invalid(/clientId/));
  });
});
