/**
 * `spillway consume --group G --mode group|broadcast`, `spillway group list|describe`, and the HTTP
 * and metrics views of groups, against a broker child process.
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
  directory = mkdtempSync(join(tmpdir(), 'spillway-cli-group-'));
  broker = await BrokerProcess.start(['--data-dir', directory]);
}, 120_000);
afterAll(async () => {
  await broker?.stop();
  killBrokers();
  rmSync(directory, { recursive: true, force: true });
});

describe('spillway consume --group and spillway group', () => {
  it('commits what it printed: the group goes on from there; list and describe show offsets and lag', async () => {
    const url = ['--broker', broker.url];
    expect((await runCli(['topic', 'create', 'orders', '--partitions', '3', ...url])).code).toBe(0);
    const input = `${Array.from({ length: 30 }, (_, i) => `m${i}`).join('\n')}\n`;
    expect((await runCli(['produce', 'orders', ...url], { input })).code).toBe(0);
    const first = await runCli(['consume', 'orders', '--group', 'billing', '--max-messages', '20', ...url]);
    expect(first.code).toBe(0);
    const printed = jsonLines<{ value: string; deliveryCount: number }>(first.stdout);
    expect(printed).toHaveLength(20);
    const rest = await runCli(['consume', 'orders', '--group', 'billing', '--idle-exit-ms', '500', ...url]);
    expect(rest.code).toBe(0);
    const values = [...printed, ...jsonLines<{ value: string }>(rest.stdout)].map((m) => m.value);
    expect(values.sort()).toEqual(Array.from({ length: 30 }, (_, i) => `m${i}`).sort());
    const list = await runCli(['group', 'list', ...url]);
    expect(JSON.parse(list.stdout)).toEqual([
      { group: 'billing', mode: 'group', generation: 4, memberCount: 0, lag: 0 },
    ]);
    const described = JSON.parse((await runCli(['group', 'describe', 'billing', ...url])).stdout);
    expect(described).toMatchObject({ group: 'billing', mode: 'group', members: [], lag: 0 });
    expect(described.partitions.map((p: { committed: number; logEndOffset: number }) => p.committed)).toEqual(
      described.partitions.map((p: { logEndOffset: number }) => p.logEndOffset),
    );
    // HTTP and metrics.
    const http = `http://127.0.0.1:${broker.port}`;
    const groups = await (await fetch(`${http}/v1/groups`)).json();
    expect(groups).toEqual({
      groups: [{ group: 'billing', mode: 'group', generation: 4, memberCount: 0, lag: 0 }],
    });
    expect(await (await fetch(`${http}/v1/groups/billing`)).json()).toEqual(described);
    const missing = await fetch(`${http}/v1/groups/nope`);
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as { error: { code: string } }).error.code).toBe('UNKNOWN_GROUP');
    const metrics = await (await fetch(`${http}/metrics`)).text();
    expect(metrics).toContain('spillway_group_lag{group="billing",topic="orders",partition="0"} 0');
    // Broadcast: each member id has its own position.
    for (const member of ['x', 'y']) {
      const run = await runCli([
        'consume',
        'orders',
        '--group',
        'fanout',
        '--mode',
        'broadcast',
        '--member-id',
        member,
        '--idle-exit-ms',
        '500',
        ...url,
      ]);
      expect(jsonLines(run.stdout)).toHaveLength(30);
    }
    const again = await runCli([
      'consume',
      'orders',
      '--group',
      'fanout',
      '--mode',
      'broadcast',
      '--member-id',
      'x',
      '--idle-exit-ms',
      '300',
      ...url,
    ]);
    expect(jsonLines(again.stdout)).toHaveLength(0);
  }, 60_000);

  it('bad usage exits 2; an unknown group exits 1 with one line', async () => {
    const url = ['--broker', broker.url];
    expect((await runCli(['consume', 'orders', '--mode', 'group', ...url])).code).toBe(2);
    const unknownMode = await runCli(['consume', 'orders', '--group', 'g', '--mode', 'fanout', ...url]);
    expect([unknownMode.code, unknownMode.stderr]).toEqual([2, expect.stringContaining('--mode must be')]);
    expect((await runCli(['group', 'describe', ...url])).code).toBe(2);
    expect((await runCli(['group', 'frobnicate', ...url])).code).toBe(2);
    const unknown = await runCli(['group', 'describe', 'nope', ...url]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr.trim().split('\n')).toHaveLength(1);
    expect(unknown.stderr).toContain('UNKNOWN_GROUP');
  });
});
