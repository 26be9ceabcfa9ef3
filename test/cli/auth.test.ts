/**
 * `spillway auth add` makes principals for `spillway broker --auth-file`, and every client command
 * authenticates with --token or SPILLWAY_TOKEN (docs/SECURITY.md). Real processes.
 */
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BrokerProcess, ensureBuilt, killBrokers, runCli } from './cli-process.js';

let directory: string;
let broker: BrokerProcess | undefined;

beforeAll(() => {
  ensureBuilt();
  directory = mkdtempSync(join(tmpdir(), 'spillway-cli-auth-'));
});

afterAll(async () => {
  await broker?.stop('SIGTERM');
  killBrokers();
  rmSync(directory, { recursive: true, force: true });
});

describe('spillway auth and --token', () => {
  it('adds principals (hash only, file 0600), and clients need their token', async () => {
    const file = join(directory, 'auth.json');
    const admin = await runCli([
      'auth',
      'add',
      'ops',
      '--file',
      file,
      '--allow',
      'topic:*:admin,produce,consume',
      '--allow',
      'cluster:*:describe',
    ]);
    expect(admin.code, admin.stderr).toBe(0);
    const opsToken = admin.stdout.trim();
    expect(opsToken).toMatch(/^ops\.[A-Za-z0-9_-]{43}$/);
    const reader = await runCli(['auth', 'add', 'reader', '--file', file, '--allow', 'topic:logs.*:consume']);
    expect(reader.code, reader.stderr).toBe(0);
    const readerToken = reader.stdout.trim();
    const stored = readFileSync(file, 'utf8');
    expect(stored).not.toContain(opsToken.split('.')[1]);
    expect(stored).toContain('scrypt$16384$8$1$');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect((await runCli(['auth', 'add', 'ops', '--file', file])).code).toBe(2); // exists

    broker = await BrokerProcess.start(['--data-dir', join(directory, 'data'), '--auth-file', file]);
    expect(broker.stderr).toContain('authentication on: 2 principals');
    const url = broker.url;
    const refused = await runCli(['topic', 'create', 'logs.app', '--broker', url]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('UNAUTHENTICATED');
    const created = await runCli(['topic', 'create', 'logs.app', '--broker', url, '--token', opsToken]);
    expect(created.code, created.stderr).toBe(0);
    const produced = await runCli(['produce', 'logs.app', '--broker', url, '--token', opsToken], {
      input: 'one\ntwo\n',
    });
    expect(produced.code, produced.stderr).toBe(0);
    // The admin listings take --token too (ops holds cluster describe).
    for (const args of [
      ['txn', 'list'],
      ['delay', 'stats'],
    ]) {
      expect((await runCli([...args, '--broker', url])).stderr).toContain('UNAUTHENTICATED');
      const listed = await runCli([...args, '--broker', url, '--token', opsToken]);
      expect(listed.code, listed.stderr).toBe(0);
    }
    // SPILLWAY_TOKEN when --token is absent
    process.env['SPILLWAY_TOKEN'] = readerToken;
    try {
      const consumed = await runCli([
        'consume',
        'logs.app',
        '--broker',
        url,
        '--max-messages',
        '2',
        '--idle-exit-ms',
        '3000',
      ]);
      expect(consumed.code, consumed.stderr).toBe(0);
      expect(consumed.stdout).toContain('"value":"two"');
      const forbidden = await runCli(['topic', 'delete', 'logs.app', '--broker', url]);
      expect(forbidden.code).toBe(1);
      expect(forbidden.stderr).toContain('FORBIDDEN');
    } finally {
      delete process.env['SPILLWAY_TOKEN'];
    }
  }, 60_000);

  it('hash-token prints an entry for a token made elsewhere', async () => {
    const result = await runCli(['auth', 'hash-token'], { input: 'svc.some-secret\n' });
    expect(result.code, result.stderr).toBe(0);
    const entry = JSON.parse(result.stdout) as { name: string; tokenHash: string };
    expect(entry.name).toBe('svc');
    expect(entry.tokenHash).toMatch(/^scrypt\$16384\$8\$1\$/);
    expect(result.stdout).not.toContain('some-secret');
    expect((await runCli(['auth', 'hash-token'], { input: 'no dot\n' })).code).toBe(2);
  });

  it('refuses a broken auth file at start with the field named', async () => {
    const bad = join(directory, 'bad.json');
    const { writeFileSync } = await import('node:fs');
    writeFileSync(bad, JSON.stringify({ principals: [{ name: 'x', tokenHash: 'plain-token' }] }));
    const started = await runCli([
      'broker',
      '--data-dir',
      join(directory, 'data-bad'),
      '--port',
      '0',
      '--auth-file',
      bad,
    ]);
    expect(started.code).toBe(1);
    expect(started.stderr).toContain('tokenHash');
  });
});

describe('the warning of a broker reachable from elsewhere', () => {
  /** Starts `spillway broker ARGS`, waits for its listening line, stops it by PID; returns stderr. */
  async function startupStderr(args: readonly string[]): Promise<string> {
    const { spawn } = await import('node:child_process');
    const { cliPath, freePort } = await import('./cli-process.js');
    const port = await freePort();
    const child = spawn(process.execPath, [cliPath, 'broker', '--port', String(port), ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString('utf8');
    });
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no listening line; stderr: ${stderr}`)), 15_000);
        child.stdout.on('data', (chunk: Buffer) => {
          if (chunk.toString('utf8').includes('spillway listening on')) {
            clearTimeout(timer);
            resolve();
          }
        });
        child.once('exit', () => reject(new Error(`exited; stderr: ${stderr}`)));
      });
    } finally {
      child.removeAllListeners('exit');
      const exited = new Promise((resolve) => child.once('exit', resolve));
      process.kill(child.pid!, 'SIGTERM');
      await exited;
    }
    return stderr;
  }

  it('is printed once on a non-loopback address without --auth-file, not with one', async () => {
    const open = await startupStderr(['--host', '0.0.0.0', '--data-dir', join(directory, 'data-open')]);
    expect(open.match(/warning: listening on 0\.0\.0\.0.*without authentication/g)?.length).toBe(1);
    const file = join(directory, 'auth-warning.json');
    expect((await runCli(['auth', 'add', 'someone', '--file', file])).code).toBe(0);
    const closed = await startupStderr([
      '--host',
      '0.0.0.0',
      '--data-dir',
      join(directory, 'data-closed'),
      '--auth-file',
      file,
    ]);
    expect(closed).not.toMatch(/warning: listening on/);
    expect(closed).toContain('authentication on: 1 principals');
    const loopback = await startupStderr(['--data-dir', join(directory, 'data-loopback')]);
    expect(loopback).not.toMatch(/warning: listening on/);
  }, 60_000);
});
