/**
 * docs/OPERATIONS.md ("Monitoring") and docs/PROTOCOL.md ("Metrics") name what GET /metrics serves:
 * every metric family the code renders must be named in both, and where OPERATIONS.md gives a
 * family's labels (`name{a,b}`) they must be the labels the code writes.
 */
import { readFileSync } from 'node:fs';
import { expect, it } from 'vitest';
import { systemClock } from '../../src/clock.js';
import type { TopicDescription } from '../../src/protocol/broker-api.js';
import type { GroupDescription } from '../../src/protocol/group-api.js';
import { Opcode } from '../../src/protocol/opcodes.js';
import { parseAuthConfig } from '../../src/server/auth/auth-file.js';
import { Authenticator } from '../../src/server/auth/authenticator.js';
import { PrincipalQuotaTracker } from '../../src/server/auth/principal-quotas.js';
import { okResult, ServerMetrics } from '../../src/server/metrics.js';

const read = (name: string) => readFileSync(new URL(`../../docs/${name}`, import.meta.url), 'utf8');
const operations = read('OPERATIONS.md');
const protocol = read('PROTOCOL.md');

function groupOf(mode: 'group' | 'broadcast', member: string | null): GroupDescription {
  return {
    group: `g-${mode}`,
    mode,
    generation: 1,
    topics: ['t'],
    members: [],
    partitions: [{ topic: 't', partition: 0, member, committed: 0, logEndOffset: 1, lag: 1 }],
    lag: 1,
  };
}

/** Family name -> label names, from a rendering with every kind of series present. */
function renderedFamilies(): Map<string, Set<string>> {
  const metrics = new ServerMetrics();
  metrics.countRequest(Opcode.hello, okResult);
  metrics.countHttpRequest('produce', 200);
  // With an auth file: the authentication and per-principal families are rendered too.
  const quotas = new PrincipalQuotaTracker(systemClock);
  quotas.charge('svc', {}, 'produce', 10);
  metrics.security = {
    authenticator: new Authenticator(parseAuthConfig({ principals: [] }, 'test'), systemClock),
    quotas,
  };
  const topic = {
    name: 't',
    partitions: [
      { partition: 0, logStartOffset: 0, logEndOffset: 1, durableOffset: 1, sizeBytes: 9, segmentCount: 1 },
    ],
  } as unknown as TopicDescription;
  const families = new Map<string, Set<string>>();
  for (const line of metrics
    .render(
      () => [topic],
      () => [5],
      undefined,
      () => null,
      () => null,
      () => [groupOf('group', null), groupOf('broadcast', 'm')],
      () => [],
      () => ({
        open: 1,
        committing: 0,
        committed: 2,
        rolledBack: 1,
        timedOut: 1,
        checksSent: 1,
        checksWithoutProducer: 1,
        checkAnswers: { commit: 0, rollback: 0, unknown: 0, failed: 0 },
        halfBytes: 10,
      }),
      () => ({
        pending: 1,
        withinMinute: 1,
        withinHour: 0,
        withinDay: 0,
        later: 0,
        nextDueMs: 1,
        scheduled: 1,
        fired: 0,
        deadLettered: 0,
        lateness: { samples: 0, p50Ms: 0, p99Ms: 0, maxMs: 0 },
        wheelBytes: 16,
        delayLogBytes: 100,
      }),
      () => ({ ids: 2, claimed: 0, topics: 1, duplicates: 1 }),
      () => [
        {
          topic: 't',
          partition: 0,
          role: 'leader',
          leaderEpoch: 2,
          highWatermark: 1,
          logEndOffset: 1,
          isrSize: 1,
          replicaCount: 2,
          followers: [{ brokerId: 2, inSync: false, lagOffsets: 1, lagMs: 1500 }],
        },
      ],
    )
    .split('\n')) {
    const type = /^# TYPE (\w+) /.exec(line);
    if (type !== null) families.set(type[1]!, new Set());
    const sample = /^(\w+)\{([^}]*)\} /.exec(line);
    if (sample !== null) {
      for (const pair of sample[2]!.split(',')) families.get(sample[1]!)!.add(pair.split('=')[0]!);
    }
  }
  return families;
}

it('every metric family is documented, with the labels the code writes', () => {
  const families = renderedFamilies();
  expect(families.size).toBeGreaterThan(10);
  expect(families.get('spillway_requests_total')).toEqual(new Set(['opcode', 'code']));
  for (const [name, labels] of families) {
    expect(operations, `${name} in OPERATIONS.md`).toMatch(new RegExp(`\`${name}[{\`]`));
    const suffix = name.replace(/^spillway_partition/, '');
    expect(
      protocol.includes(`\`${name}\``) || protocol.includes(`\`${suffix}\``),
      `${name} in PROTOCOL.md`,
    ).toBe(true);
    const documented = new RegExp(`\`${name}\\{([\\w,]*)\\}\``).exec(operations);
    if (documented !== null) {
      expect(new Set(documented[1]!.split(',')), `labels of ${name} in OPERATIONS.md`).toEqual(labels);
    }
  }
});
