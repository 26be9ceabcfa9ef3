/** Opcodes of the wire protocol (docs/PROTOCOL.md). Numbers are part of the format: never reuse one. */
export const Opcode = {
  hello: 1,
  createTopic: 2,
  deleteTopic: 3,
  listTopics: 4,
  describeTopic: 5,
  addPartitions: 6,
  produce: 10,
  fetch: 11,
  listOffset: 12,
  integrityReport: 30,
  repairPartition: 31,
} as const;

export type OpcodeName = keyof typeof Opcode;

const names = new Map<number, OpcodeName>(
  Object.entries(Opcode).map(([name, code]) => [code, name as OpcodeName]),
);

export function opcodeName(opcode: number): OpcodeName | undefined {
  return names.get(opcode);
}

/** Protocol version spoken by this code; HELLO negotiates it. */
export const protocolVersion = 1;
