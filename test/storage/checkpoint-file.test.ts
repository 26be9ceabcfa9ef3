/** CheckpointFile: the latest write wins, whatever mix of write() and writeSync() produced it. */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CheckpointFile } from '../../src/storage/checkpoint-file.js';

const directories: string[] = [];
afterEach(() => {
  for (const directory of directories.splice(0)) rmSync(directory, { recursive: true, force: true });
});

function file(): { checkpoint: CheckpointFile<{ n: number }>; directory: string } {
  const directory = mkdtempSync(join(tmpdir(), 'spillway-checkpoint-'));
  directories.push(directory);
  return { checkpoint: new CheckpointFile(join(directory, 'test.checkpoint')), directory };
}

describe('CheckpointFile', () => {
  it('a writeSync during an async write is not overwritten by the older async value', async () => {
    const { checkpoint, directory } = file();
    const older = checkpoint.write({ n: 1 });
    checkpoint.writeSync({ n: 2 });
    await older;
    expect(checkpoint.read()).toEqual({ status: 'ok', value: { n: 2 } });
    expect(readdirSync(directory)).toEqual(['test.checkpoint']);
  });

  it('async writes land in call order; the last one is what stays', async () => {
    const { checkpoint } = file();
    await Promise.all([checkpoint.write({ n: 1 }), checkpoint.write({ n: 2 }), checkpoint.write({ n: 3 })]);
    expect(checkpoint.read()).toEqual({ status: 'ok', value: { n: 3 } });
    checkpoint.writeSync({ n: 4 });
    await checkpoint.write({ n: 5 });
    expect(checkpoint.read()).toEqual({ status: 'ok', value: { n: 5 } });
  });
});
