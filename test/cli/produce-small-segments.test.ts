/**
 * `spillway produce` on a topic whose segments are smaller than the batches the command aims at
 * (256 KiB): it sizes its batches to the topic and acknowledges every line, instead of failing with
 * INVALID_BATCH after writing part of the input.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { BrokerProcess, ensureBuilt, jsonLines, killBrokers, runCli } from './cli-process.js';

let directory: string;

beforeAll(() => {
  ensureBuilt();
  directory = mkdtempSync(join(tmpdir(), 'spillway-cli-small-'));
});

afterAll(() => {
  killBrokers();
  rmSync(directory, { recursive: true, force: true });
});

it('acknowledges every line on a topic with 64 KiB segments', async () => {
  const broker = await BrokerProcess.start(['--data-dir', join(directory, 'data')]);
  const created = await runCli([
    'topic',
    'create',
    'small',
    '--segment-bytes',
    String(64 * 1024),
    '--broker',
    broker.url,
  ]);
  expect(created.code, created.stderr).toBe(0);
  const lines = Array.from({ length: 100_000 }, (_, i) => String(i + 1)).join('\n');
  const produced = await runCli(['produce', 'small', '--broker', broker.url], {
    input: `${lines}\n`,
    timeoutMs: 60_000,
  });
  expect(produced.stderr).toBe('');
  expect(produced.code).toBe(0);
  const acks = jsonLines<{ offset: number }>(produced.stdout);
  expect(acks).toHaveLength(100_000);
  expect(acks.at(-1)!.offset).toBe(99_999);
  expect(await broker.stop('SIGTERM')).toEqual({ code: 0, signal: null });
});
