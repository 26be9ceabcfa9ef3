/**
 * Reads the group view a JOIN_GROUP, HEARTBEAT or RELEASE_PARTITIONS answer carries
 * (protocol/group-api.ts GroupView), checking every field: a broker answer is input too.
 */
import { SpillwayError } from '../errors.js';
import type { AssignedPartition, GroupMode, GroupView, PartitionRef } from '../protocol/group-api.js';

function bad(what: string): never {
  throw new SpillwayError('PROTOCOL_ERROR', `group view: ${what}`);
}

function fieldsOf(value: unknown, what: string): Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) bad(`${what} is not a map`);
  return value as Record<string, unknown>;
}

function integer(fields: Record<string, unknown>, name: string): number {
  const value = fields[name];
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0)
    bad(`${name} is not an integer >= 0`);
  return value;
}

function text(fields: Record<string, unknown>, name: string): string {
  const value = fields[name];
  if (typeof value !== 'string') bad(`${name} is not a string`);
  return value;
}

function ref(value: unknown): PartitionRef {
  const fields = fieldsOf(value, 'a partition');
  return { topic: text(fields, 'topic'), partition: integer(fields, 'partition') };
}

export function parseGroupView(header: unknown): GroupView {
  const fields = fieldsOf(header, 'the header');
  const mode = fields['mode'];
  if (mode !== 'group' && mode !== 'broadcast') bad(`mode ${String(mode)}`);
  const assigned = fields['assigned'];
  const revoking = fields['revoking'];
  if (!Array.isArray(assigned) || !Array.isArray(revoking)) bad('assigned / revoking are not arrays');
  return {
    group: text(fields, 'group'),
    memberId: text(fields, 'memberId'),
    mode: mode as GroupMode,
    generation: integer(fields, 'generation'),
    viewVersion: integer(fields, 'viewVersion'),
    sessionTimeoutMs: integer(fields, 'sessionTimeoutMs'),
    assigned: assigned.map((value): AssignedPartition => {
      const committed = fieldsOf(value, 'a partition')['committed'];
      if (
        committed !== null &&
        (typeof committed !== 'number' || !Number.isSafeInteger(committed) || committed < 0)
      ) {
        bad('committed is not null or an integer >= 0');
      }
      return { ...ref(value), committed: committed as number | null };
    }),
    revoking: revoking.map(ref),
  };
}
