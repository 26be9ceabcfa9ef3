import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Broker } from '../../src/spillway-broker.js';

const repositoryRoot = resolve(import.meta.dirname, '../..');
const compiledBroker = join(repositoryRoot, 'dist/src/spillway-broker.js');
const directories: string[] = [];

afterEach(() => {
  for (const dir of directories.splice(0)) rmSync(dir, { recursive: true, force: true });
});

beforeAll(() => {
  // `npm test` builds first; a lone `npx vitest run` of this file may find no build.
  if (!existsSync(compiledBroker)) spawnSync('npx', ['tsc', '-p', 'tsconfig.json'], { cwd: repositoryRoot });
});

function dataDirectory(): string {
  const dir = mkdtempSync(join(tmpdir(), 'spillway-lock-'));
  directories.push(dir);
  return dir;
}

describe('one broker per data directory', () => {
  it('refuses a second broker in another process, and takes over once that process is killed', async () => {
    const dataDir = dataDirectory();
    const script = `const { Broker } = await import(${JSON.stringify(compiledBroker)});
      await Broker.open({ dataDir: ${JSON.stringify(dataDir)} });
      process.stdout.write('open\\n');
      setInterval(() => {}, 1000);`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    try {
      await new Promise<void>((resolveOpen, reject) => {
        child.stdout.on('data', (chunk: Buffer) => {
          if (chunk.toString().includes('open')) resolveOpen();
        });
        child.once('exit', (code) => reject(new Error(`child exited with ${code}`)));
      });
      await expect(Broker.open({ dataDir })).rejects.toMatchObject({
        code: 'INVALID_ARGUMENT',
        message: expect.stringMatching(/in use by another broker/),
      });
    } finally {
      child.kill('SIGKILL');
      await new Promise((resolveExit) => child.once('exit', resolveExit));
    }
    // The kernel released the dead process's lock: no stale lock file blocks the restart.
    const broker = await Broker.open({ dataDir });
    await broker.close();
  });

  it('refuses a second broker in the same process until the first is closed', async () => {
    const dataDir = dataDirectory();
    const first = await Broker.open({ dataDir });
    await expect(Broker.open({ dataDir })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await first.close();
    const second = await Broker.open({ dataDir });
    await second.close();
  });
});
