/**
 * The README's way to run the broker from a fresh clone: `npm start` (node on the built CLI, no npx
 * link step). It is ready within seconds, and SIGTERM to its process group (what a terminal's
 * Ctrl-C, systemd or a container runtime send) stops the broker cleanly: exit, the data directory
 * unlocked, no process of the group left. Also `spillway --version` and `--allow-origin`.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { BrokerProcess, ensureBuilt, freePort, killBrokers, repositoryRoot, runCli } from './cli-process.js';

let directory: string;

beforeAll(() => {
  ensureBuilt();
  directory = mkdtempSync(join(tmpdir(), 'spillway-npm-start-'));
});

afterAll(() => {
  killBrokers();
  rmSync(directory, { recursive: true, force: true });
});

/** True while some process of group `groupId` exists. */
function groupAlive(groupId: number): boolean {
  try {
    process.kill(-groupId, 0);
    return true;
  } catch {
    return false;
  }
}

it('npm start runs the broker; SIGTERM to its process group stops it cleanly', async () => {
  const port = await freePort();
  const dataDir = join(directory, 'npm');
  const startedAt = Date.now();
  const child = spawn('npm', ['start', '--silent', '--', '--data-dir', dataDir, '--port', String(port)], {
    cwd: repositoryRoot,
    detached: true, // its own process group, as a terminal gives a foreground job
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const groupId = child.pid!;
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString('utf8');
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no listening line within 30 s: ${stderr}`)), 30_000);
      let stdout = '';
      child.stdout.on('data', (chunk: Buffer) => {
        stdout += chunk.toString('utf8');
        if (stdout.includes(`spillway listening on ws://127.0.0.1:${port}`)) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    const readyMs = Date.now() - startedAt;
    process.stdout.write(`npm start: listening after ${readyMs} ms\n`);
    expect((await runCli(['topic', 'create', 'npm', '--broker', `ws://127.0.0.1:${port}`])).code).toBe(0);

    process.kill(-groupId, 'SIGTERM');
    await exited;
    for (let attempt = 0; attempt < 500 && groupAlive(groupId); attempt++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(groupAlive(groupId)).toBe(false);
    expect(stderr).toContain('spillway: shutting down');
  } finally {
    if (groupAlive(groupId)) process.kill(-groupId, 'SIGKILL');
  }
  // Closed cleanly: the data directory opens again at once, with the topic.
  const again = await BrokerProcess.start(['--data-dir', dataDir]);
  const listed = await runCli(['topic', 'list', '--broker', again.url]);
  expect(listed.stdout).toContain('npm');
  expect(await again.stop('SIGTERM')).toEqual({ code: 0, signal: null });
});

it('spillway --version prints the package version', async () => {
  const { version } = JSON.parse(readFileSync(join(repositoryRoot, 'package.json'), 'utf8')) as {
    version: string;
  };
  const result = await runCli(['--version']);
  expect(result).toMatchObject({ code: 0, stdout: `spillway ${version}\n` });
});

it('--allow-origin lets that web page origin in; others stay refused', async () => {
  const broker = await BrokerProcess.start([
    '--data-dir',
    join(directory, 'origin'),
    '--allow-origin',
    'https://app.example',
  ]);
  const statusFor = (origin: string) =>
    new Promise<number>((resolve, reject) => {
      const outgoing = request(
        { host: '127.0.0.1', port: broker.port, path: '/v1/topics', headers: { origin }, agent: false },
        (response) => {
          response.resume();
          resolve(response.statusCode ?? 0);
        },
      );
      outgoing.on('error', reject);
      outgoing.end();
    });
  expect(await statusFor('https://app.example')).toBe(200);
  expect(await statusFor('https://evil.example')).toBe(403);
  expect(await broker.stop('SIGTERM')).toEqual({ code: 0, signal: null });
});
