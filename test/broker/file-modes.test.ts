/**
 * Data at rest: what the broker creates is owner-only (files 0600, directories 0700) whatever the
 * umask, or the configured modes. A child process with umask 0 (which would make plain creates
 * 0666/0777) opens a broker, creates a topic, produces (segments, indexes, checkpoints, the metadata
 * log) and closes; every file and directory under the data directory is then checked.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { temporaryDirectory } from './helpers.js';

const brokerModule = new URL('../../dist/src/spillway-broker.js', import.meta.url).href;
const batchModule = new URL('../../dist/src/format/record-batch.js', import.meta.url).href;
const nativeModule = new URL('../../dist/src/native.js', import.meta.url).href;
const directories: string[] = [];

afterEach(() => {
  for (const directory of directories.splice(0)) rmSync(directory, { recursive: true, force: true });
});

function runChild(dataDir: string, options: string): void {
  const script = `
    process.umask(0);
    const { Broker } = await import(${JSON.stringify(brokerModule)});
    const { BatchBuilder } = await import(${JSON.stringify(batchModule)});
    const { crc32c } = await import(${JSON.stringify(nativeModule)});
    const broker = await Broker.open({ dataDir: ${JSON.stringify(dataDir)}, durability: 'always', ${options} });
    await broker.topics.create('modes', { partitions: 2 });
    const builder = new BatchBuilder();
    builder.append({ value: 'hello' });
    await broker.messages.produce('modes', 0, builder.finishCopy({ crc32c }));
    await broker.close();
  `;
  execFileSync(process.execPath, ['--input-type=module', '-e', script], { stdio: 'pipe' });
}

function modes(root: string): Array<{ path: string; directory: boolean; mode: number }> {
  const found: Array<{ path: string; directory: boolean; mode: number }> = [];
  const walk = (path: string) => {
    const stat = statSync(path);
    found.push({ path, directory: stat.isDirectory(), mode: stat.mode & 0o777 });
    if (stat.isDirectory()) for (const name of readdirSync(path)) walk(join(path, name));
  };
  walk(root);
  return found;
}

it('creates files 0600 and directories 0700 under umask 0', () => {
  const dataDir = join(temporaryDirectory(), 'data');
  directories.push(dataDir);
  runChild(dataDir, '');
  const found = modes(dataDir);
  expect(found.filter((entry) => !entry.directory).length).toBeGreaterThan(4);
  for (const entry of found) {
    expect(entry.mode.toString(8), entry.path).toBe(entry.directory ? '700' : '600');
  }
});

it('uses the configured modes instead', () => {
  const dataDir = join(temporaryDirectory(), 'data');
  directories.push(dataDir);
  runChild(dataDir, 'fileMode: 0o640, directoryMode: 0o750');
  for (const entry of modes(dataDir)) {
    expect(entry.mode.toString(8), entry.path).toBe(entry.directory ? '750' : '640');
  }
});
