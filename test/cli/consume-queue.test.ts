/**
 * `spillway consume TOPIC --group G --mode shared|key_shared` against a broker process: each message
 * is printed and then acked, so a second consumer of the group gets only what the first did not take.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BrokerProcess, ensureBuilt, jsonLines, killBrokers, runCli } from './cli-process.js';

let directory: string;
let broker: BrokerProcess;

beforeAll(async () => {
  ensureBuilt();
  directory = mkdtempSync(join(tmpdir(), 'spillway-cli-queue-'));
  broker = await BrokerProcess.start(['--data-dir', join(directory, 'data'), '--durability', 'none']);
});

afterAll(async () => {
  if (broker?.running) await broker.stop();
  killBrokers();
  rmSync(directory, { recursive: true, force: true });
});

const cli = (args: string[], input?: string) =>
  runCli([...args, '--broker', broker.url], input === undefined ? {} : { input });

describe('spillway consume --group --mode', () => {
  it.each(['shared', 'key_shared'])(
    '--mode %s prints, acks, and the group does not see acked messages again',
    async (mode) => {
      const topic = `queue-${mode}`;
      expect((await cli(['topic', 'create', topic, '--partitions', '2'])).code).toBe(0);
      const input = `${Array.from({ length: 6 }, (_, i) => `m${i}`).join('\n')}\n`;
      expect((await cli(['produce', topic, '--key', 'k'], input)).code).toBe(0);
      const first = await cli([
        'consume',
        topic,
        '--group',
        `g-${mode}`,
        '--mode',
        mode,
        '--max-messages',
        '4',
      ]);
      expect(first.stderr).toBe('');
      expect(first.code).toBe(0);
      const printed = jsonLines<{ value: string; deliveryCount: number }>(first.stdout);
      expect(printed.map((line) => line.value)).toEqual(['m0', 'm1', 'm2', 'm3']);
      expect(printed.every((line) => line.deliveryCount === 1)).toBe(true);
      // The first consumer stopped after 4: the 2 it received and did not print came back at once.
      const second = await cli([
        'consume',
        topic,
        '--group',
        `g-${mode}`,
        '--mode',
        mode,
        '--idle-exit-ms',
        '1500',
      ]);
      expect(second.code).toBe(0);
      expect(jsonLines<{ value: string }>(second.stdout).map((line) => line.value)).toEqual(['m4', 'm5']);
      const third = await cli([
        'consume',
        topic,
        '--group',
        `g-${mode}`,
        '--mode',
        mode,
        '--idle-exit-ms',
        '800',
      ]);
      expect(third.stdout).toBe('');
    },
  );
});
