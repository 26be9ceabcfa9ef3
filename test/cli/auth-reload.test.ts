/**
 * `spillway broker --auth-file FILE` reloads the file on SIGHUP (docs/SECURITY.md, "The auth
 * file"): new principals can connect at once, changed rules apply to open connections, a removed
 * principal's connections are closed and its token refused, and a file that does not load keeps
 * the previous one in force, saying why. A real broker process and real clients.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Spillway } from '../../src/client/index.js';
import { BrokerProcess, ensureBuilt, killBrokers, runCli } from './cli-process.js';

let directory: string;
let broker: BrokerProcess | undefined;
const clients: Spillway[] = [];

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits (at most 10 s) until the broker's stderr holds `text` `count` times. */
async function stderrSays(text: string, count = 1): Promise<void> {
  for (let waited = 0; waited < 10_000; waited += 20) {
    if (broker!.stderr.split(text).length - 1 >= count) return;
    await sleep(20);
  }
  throw new Error(`the broker did not say '${text}' (${count}x); stderr: ${broker!.stderr}`);
}

async function addPrincipal(file: string, name: string, ...allow: string[]): Promise<string> {
  const result = await runCli([
    'auth',
    'add',
    name,
    '--file',
    file,
    ...allow.flatMap((rule) => ['--allow', rule]),
  ]);
  expect(result.code, result.stderr).toBe(0);
  return result.stdout.trim();
}

async function connect(token: string): Promise<Spillway> {
  const client = await Spillway.connect(broker!.url, { token });
  clients.push(client);
  return client;
}

beforeAll(() => {
  ensureBuilt();
  directory = mkdtempSync(join(tmpdir(), 'spillway-cli-auth-reload-'));
});

afterAll(async () => {
  for (const client of clients) await client.close().catch(() => undefined);
  await broker?.stop('SIGTERM');
  killBrokers();
  rmSync(directory, { recursive: true, force: true });
});

describe('auth file reload (SIGHUP)', () => {
  it('applies a changed file to new and open connections, and keeps the old one when the new one is bad', async () => {
    const file = join(directory, 'auth.json');
    const opsToken = await addPrincipal(file, 'ops', 'topic:*:admin,produce,consume');
    broker = await BrokerProcess.start(['--data-dir', join(directory, 'data'), '--auth-file', file]);
    const ops = await connect(opsToken);
    await ops.admin.createTopic('logs');

    // A new principal: its token works once the file is reloaded.
    const writerToken = await addPrincipal(file, 'writer', 'topic:*:produce');
    await expect(Spillway.connect(broker.url, { token: writerToken })).rejects.toMatchObject({
      code: 'UNAUTHENTICATED',
    });
    process.kill(broker.pid, 'SIGHUP');
    await stderrSays('auth file reloaded: 2 principals');
    const writer = await connect(writerToken);
    const writerProducer = writer.producer();
    expect((await writerProducer.send('logs', { value: 'one' })).offset).toBe(0);

    // Narrower rules for writer (same token) and ops removed: writer's open connection keeps
    // going under the new rules, ops's is closed and its token refused.
    const config = JSON.parse(readFileSync(file, 'utf8')) as {
      principals: Array<{ name: string; allow: unknown[] }>;
    };
    config.principals = config.principals.filter((principal) => principal.name !== 'ops');
    config.principals[0]!.allow = [{ resource: 'topic', name: 'other.*', operations: ['produce'] }];
    writeFileSync(file, JSON.stringify(config), { mode: 0o600 });
    process.kill(broker.pid, 'SIGHUP');
    await stderrSays('auth file reloaded: 1 principals');
    expect(broker.stderr).toContain('1 connection(s) closed');
    await expect(writerProducer.send('logs', { value: 'two' })).rejects.toMatchObject({ code: 'FORBIDDEN' });
    await expect(ops.admin.listTopics()).rejects.toThrow();
    await expect(Spillway.connect(broker.url, { token: opsToken })).rejects.toMatchObject({
      code: 'UNAUTHENTICATED',
    });

    // A broken file: reported, and the previous configuration stays in force.
    writeFileSync(file, '{ "principals": [ { "name": "x", "tokenHash": "plain-text" } ] }', { mode: 0o600 });
    process.kill(broker.pid, 'SIGHUP');
    await stderrSays('auth file reload failed, the previous one stays in force');
    expect(broker.stderr).toMatch(/reload failed[^\n]*tokenHash/);
    const again = await connect(writerToken);
    await expect(again.admin.describeTopic('logs')).rejects.toMatchObject({ code: 'FORBIDDEN' });
    expect(broker.running).toBe(true);
    await writerProducer.close().catch(() => undefined);
  }, 60_000);
});
