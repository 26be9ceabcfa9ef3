/** The group opcodes' request validation: every bad field is an INVALID_ARGUMENT naming it. */
import { describe, expect, test } from 'vitest';
import { SpillwayError } from '../../src/errors.js';
import { groupCommitOffsetsMax } from '../../src/limits.js';
import {
  parseCommitOffsets,
  parseGroupFetch,
  parseHeartbeat,
  parseJoinGroup,
  parseReleasePartitions,
} from '../../src/protocol/group-messages.js';

function invalid(parse: () => unknown, pattern: RegExp): void {
  try {
    parse();
  } catch (error) {
    expect(error).toBeInstanceOf(SpillwayError);
    expect((error as SpillwayError).code).toBe('INVALID_ARGUMENT');
    expect((error as Error).message).toMatch(pattern);
    return;
  }
  throw new Error('no error');
}

describe('group request headers', () => {
  test('valid headers parse, with defaults', () => {
    expect(parseJoinGroup({ group: 'g', topics: ['t'], mode: 'group' })).toEqual({
      group: 'g',
      topics: ['t'],
      mode: 'group',
    });
    expect(parseHeartbeat({ group: 'g', memberId: 'm', viewVersion: 3 })).toEqual({
      group: 'g',
      memberId: 'm',
      viewVersion: 3,
      waitMs: 0,
    });
    expect(parseGroupFetch({ group: 'g', memberId: 'm', topic: 't', partition: 1, offset: 5 })).toMatchObject(
      {
        maxWaitMs: 0,
        minBytes: 1,
      },
    );
  });

  test('bad fields are refused', () => {
    invalid(() => parseJoinGroup(null), /header must be a map/);
    invalid(() => parseJoinGroup({ group: 'g', topics: [], mode: 'group' }), /at least one topic/);
    invalid(() => parseJoinGroup({ group: 'g', topics: 't', mode: 'group' }), /topics must be an array/);
    invalid(
      () => parseJoinGroup({ group: 'g', topics: ['t'], mode: 'shared' }),
      /mode must be one of group, broadcast/,
    );
    invalid(
      () => parseJoinGroup({ group: '', topics: ['t'], mode: 'group' }),
      /group must be a non-empty string/,
    );
    invalid(
      () => parseJoinGroup({ group: 'g', topics: ['t'], mode: 'group', sessionTimeoutMs: 5 }),
      /sessionTimeoutMs/,
    );
    invalid(() => parseHeartbeat({ group: 'g', memberId: 'm', viewVersion: -1 }), /viewVersion/);
    invalid(() => parseHeartbeat({ group: 'g', memberId: 'm', viewVersion: 0, waitMs: 3_600_000 }), /waitMs/);
    invalid(
      () => parseReleasePartitions({ group: 'g', memberId: 'm', partitions: [{ topic: 't' }] }),
      /partition/,
    );
    const tooMany = Array.from({ length: groupCommitOffsetsMax + 1 }, () => ({
      topic: 't',
      partition: 0,
      offset: 0,
    }));
    invalid(() => parseCommitOffsets({ group: 'g', memberId: 'm', offsets: tooMany }), /at most 4096/);
    invalid(
      () =>
        parseCommitOffsets({
          group: 'g',
          memberId: 'm',
          offsets: [{ topic: 't', partition: 0, offset: -1 }],
        }),
      /offset/,
    );
    invalid(
      () =>
        parseGroupFetch({
          group: 'g',
          memberId: 'm',
          topic: 't',
          partition: 0,
          offset: 0,
          maxWaitMs: 10 ** 9,
        }),
      /maxWaitMs/,
    );
  });
});
