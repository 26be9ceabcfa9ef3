/**
 * The cluster client against a single broker: METADATA says `cluster: false`, so the client keeps
 * its one WebSocket transport (no routing layer per request), and a replica placement above 1 is a
 * typed error (it needs a cluster) while 1 is accepted. The routing itself, on three broker
 * processes and etcd: test/cluster/cluster-client.test.ts.
 */
import { describe, expect, test } from 'vitest';
import { ClusterTransport } from '../../src/client/cluster-transport.js';
import { WebSocketTransport } from '../../src/client/websocket-transport.js';
import { connect, openBroker, serve } from './helpers.js';

describe('a single broker', () => {
  test('ClusterTransport.over keeps the first transport: no routing layer', async () => {
    const broker = await openBroker();
    const server = await serve(broker);
    const first = await WebSocketTransport.connect(server.url);
    try {
      expect(await ClusterTransport.over(first)).toBe(first);
    } finally {
      await first.close();
    }
    expect(() => ClusterTransport.checkOptions({ rerouteTimeoutMs: -1 })).toThrow(/rerouteTimeoutMs/);
  });

  test('replicationFactor / minInSyncReplicas: 1 is accepted, more needs a cluster', async () => {
    const broker = await openBroker();
    const server = await serve(broker);
    for (const target of [server.url, broker]) {
      const sw = await connect(target);
      const name = typeof target === 'string' ? 'remote' : 'local';
      const made = await sw.admin.createTopic(name, {
        partitions: 2,
        replicationFactor: 1,
        minInSyncReplicas: 1,
      });
      expect(made.partitionCount).toBe(2);
      expect(made.replicationFactor).toBeUndefined();
      await expect(sw.admin.createTopic(`${name}-rf`, { replicationFactor: 2 })).rejects.toMatchObject({
        code: 'INVALID_ARGUMENT',
        message: expect.stringMatching(/needs a cluster/),
      });
      await expect(sw.admin.createTopic(`${name}-min`, { minInSyncReplicas: 2 })).rejects.toMatchObject({
        code: 'INVALID_ARGUMENT',
      });
      await expect(sw.admin.createTopic(`${name}-bad`, { replicationFactor: 0 })).rejects.toMatchObject({
        code: 'INVALID_ARGUMENT',
      });
    }
    // HTTP takes the same names.
    const response = await fetch(`http://127.0.0.1:${server.port}/v1/topics`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'http-made', partitions: 1, replicationFactor: 3 }),
    });
    expect(response.status).toBe(400);
    expect(((await response.json()) as { error: { code: string } }).error.code).toBe('INVALID_ARGUMENT');
  });
});
