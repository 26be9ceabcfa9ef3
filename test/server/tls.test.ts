/**
 * TLS (uWS SSLApp, docs/SECURITY.md): a broker with a self-signed certificate made by the test with
 * the openssl CLI serves the WebSocket protocol on wss:// and the HTTP API on https:// (port shared),
 * to clients that trust the certificate (`ca`), and refuses clients that do not. Together with auth.
 * Skipped, saying why, when openssl is not installed.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Spillway } from '../../src/client/index.js';
import { parseAuthConfig } from '../../src/server/auth/auth-file.js';
import { hashSecret, newToken, splitToken } from '../../src/server/auth/token-hash.js';
import { startTestServer, type TestServer } from './helpers.js';

function hasOpenssl(): boolean {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
const opensslPresent = hasOpenssl();
if (!opensslPresent) process.stdout.write('tls.test: skipped: the openssl command is not installed\n');

let directory: string;
let server: TestServer;
let ca: Buffer;
const token = newToken('tls-user');

function httpsGet(
  url: string,
  options: { ca?: Buffer; token?: string },
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const outgoing = request(
      url,
      {
        method: 'GET',
        ...(options.ca ? { ca: options.ca } : {}),
        headers: options.token ? { authorization: `Bearer ${options.token}` } : {},
      },
      (incoming) => {
        let body = '';
        incoming.on('data', (chunk) => {
          body += chunk;
        });
        incoming.on('end', () => resolve({ status: incoming.statusCode ?? 0, body }));
      },
    );
    outgoing.on('error', reject);
    outgoing.end();
  });
}

describe.skipIf(!opensslPresent)('TLS', () => {
  beforeAll(async () => {
    directory = mkdtempSync(join(tmpdir(), 'spillway-tls-'));
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-days',
        '1',
        '-subj',
        '/CN=localhost',
        '-addext',
        'subjectAltName=DNS:localhost,IP:127.0.0.1',
        '-keyout',
        join(directory, 'key.pem'),
        '-out',
        join(directory, 'cert.pem'),
      ],
      { stdio: 'ignore' },
    );
    ca = readFileSync(join(directory, 'cert.pem'));
    const parts = splitToken(token)!;
    server = await startTestServer({
      tls: { certFile: join(directory, 'cert.pem'), keyFile: join(directory, 'key.pem') },
      auth: parseAuthConfig(
        {
          principals: [
            {
              name: parts.name,
              tokenHash: await hashSecret(parts.secret),
              allow: [
                { resource: 'topic', name: '*', operations: ['admin', 'produce', 'consume'] },
                { resource: 'cluster', name: '*', operations: ['describe'] },
              ],
            },
          ],
        },
        'test',
      ),
    });
  }, 30_000);

  afterAll(async () => {
    await server?.stop();
    if (directory) rmSync(directory, { recursive: true, force: true });
  });

  it('serves wss:// to a client trusting the certificate', async () => {
    expect(server.server.url).toMatch(/^wss:\/\/127\.0\.0\.1:\d+$/);
    const sw = await Spillway.connect(server.server.url, { token, ca });
    try {
      await sw.admin.createTopic('secure');
      const producer = sw.producer();
      const { offset } = await producer.send('secure', { value: 'over tls' });
      await producer.close();
      expect(offset).toBe(0);
    } finally {
      await sw.close();
    }
  });

  it('keeps one connection through pipelined large produce batches (answers are written outside uWS reads)', async () => {
    // uSockets' SSL write drops the encrypted input left in the read being handed out: answers
    // written from inside the message callback cut the stream, uWS closed the connection and the
    // client reconnected, a dozen times per 150,000 messages (server/connection.ts, deferWrites).
    const accepted = server.server.metrics.connectionsAccepted;
    const sw = await Spillway.connect(server.server.url, { token, ca });
    try {
      await sw.admin.createTopic('secure-batches', { partitions: 4 });
      const producer = sw.producer({ lingerMs: 1, batchBytes: 256 * 1024 });
      const value = Buffer.alloc(100, 0x61);
      const sends: Array<Promise<unknown>> = [];
      for (let i = 0; i < 60_000; i++) sends.push(producer.send('secure-batches', { value }));
      await Promise.all(sends);
      await producer.close();
      expect(server.server.metrics.connectionsAccepted - accepted).toBe(1);
      let total = 0;
      for (let partition = 0; partition < 4; partition++) {
        total += await sw.admin.listOffset('secure-batches', partition, 'latest');
      }
      expect(total).toBe(60_000);
    } finally {
      await sw.close();
    }
  }, 60_000);

  it('serves https:// on the same port, with bearer tokens', async () => {
    const base = `https://127.0.0.1:${server.server.port}`;
    expect((await httpsGet(`${base}/healthz`, { ca })).status).toBe(200);
    expect((await httpsGet(`${base}/v1/topics`, { ca })).status).toBe(401);
    const listed = await httpsGet(`${base}/v1/topics`, { ca, token });
    expect(listed.status).toBe(200);
    expect(listed.body).toContain('secure');
  });

  it('is refused by clients that do not trust the certificate, and does not speak plain ws://', async () => {
    await expect(Spillway.connect(server.server.url, { token, connectTimeoutMs: 3000 })).rejects.toThrow(
      /self-signed|certificate/i,
    );
    await expect(httpsGet(`https://127.0.0.1:${server.server.port}/healthz`, {})).rejects.toThrow(
      /self-signed|certificate/i,
    );
    await expect(
      Spillway.connect(`ws://127.0.0.1:${server.server.port}`, { token, connectTimeoutMs: 3000 }),
    ).rejects.toThrow();
  });
});
