/**
 * What security costs, end to end over loopback (issue 13): produce and consume throughput of 100 B
 * messages against three `spillway broker` children started by this suite and alive side by side:
 *  - plain: no auth file, ws://;
 *  - auth: --auth-file with one principal whose rules are a prefix (`bench.*`), so every PRODUCE
 *    and FETCH goes through authorization (the table lookup and the access-list cache);
 *  - auth+TLS: the same and --tls-cert/--tls-key (a self-signed certificate made with the openssl
 *    CLI; the case is skipped, saying why, when openssl is missing), wss:// with `ca`.
 * Each run produces `messages` values from one client (pipelined: at most windowMessages
 * unacknowledged, producer lingerMs 1, batchBytes 256 KiB) into a fresh 8-partition topic with
 * durability `none`, then reads them back from `earliest` (long-poll fetches of 1 MiB). The three
 * configurations run one after another within each round (each round starting with the next one,
 * after one unreported warm-up run each), 3 rounds (1 in quick mode); rows are
 * medians, details give the spread. Ratios: auth ÷ plain (target: overhead <= 5 % at 100 B, i.e.
 * ratio >= 0.95) and TLS ÷ plain. Throughput on a shared machine swings with the other processes,
 * so the suite also reports the broker child's CPU time per 1,000 messages (utime + stime from
 * /proc, 10 ms ticks), which the neighbours disturb far less, and its ratio to plain. The load average at the start and end is in the detail (the
 * machine is shared: compare ratios measured in the same run, not across runs).
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import * as path from 'node:path';
import { type SendResult, Spillway, type SpillwayOptions } from '../../src/client/index.js';
import { BatchBuilder } from '../../src/format/record-batch.js';
import { crc32c } from '../../src/native.js';
import { AccessList } from '../../src/protocol/access-control.js';
import { type DispatchOptions, dispatch } from '../../src/protocol/dispatch.js';
import { FrameFlags } from '../../src/protocol/frame.js';
import { authorize } from '../../src/protocol/opcode-access.js';
import { Opcode } from '../../src/protocol/opcodes.js';
import { parseAuthConfig } from '../../src/server/auth/auth-file.js';
import { hashSecret, newToken, splitToken } from '../../src/server/auth/token-hash.js';
import { Broker } from '../../src/spillway-broker.js';
import { memoryLogFactory } from '../../src/storage/memory-log.js';
import { payloadPool } from '../peers/payload.js';
import { type BenchContext, type BenchRow, type BenchSuite, median } from '../report.js';
import { BrokerChild } from './broker.js';

const suiteName = 'security';
const valueBytes = 100;
const partitions = 8;
const windowMessages = 65_536;
const producerOptions = { lingerMs: 1, batchBytes: 256 * 1024 } as const;

interface Configuration {
  name: 'plain' | 'auth' | 'auth+tls';
  broker: BrokerChild;
  options: SpillwayOptions;
  produced: number[];
  consumed: number[];
  /** Broker CPU time (user + system) per 1,000 messages, µs, of each produce and consume run. */
  produceCpu: number[];
  consumeCpu: number[];
}

/** CPU time (user + system) the process `pid` used so far, in µs (Linux /proc; 0 elsewhere). */
function cpuMicros(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the ') ' split; in clock ticks.
    return ((Number(fields[11]) + Number(fields[12])) * 1_000_000) / 100;
  } catch {
    return 0;
  }
}

function loadText(): string {
  return loadavg()
    .map((value) => value.toFixed(2))
    .join(' ');
}

function openssl(directory: string): { cert: string; key: string } | string {
  const cert = path.join(directory, 'cert.pem');
  const key = path.join(directory, 'key.pem');
  try {
    execFileSync(
      'openssl',
      ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=localhost'].concat([
        '-addext',
        'subjectAltName=IP:127.0.0.1',
        '-keyout',
        key,
        '-out',
        cert,
      ]),
      { stdio: 'ignore' },
    );
  } catch (error) {
    return `openssl failed or is missing (${(error as Error).message.split('\n')[0]})`;
  }
  return { cert, key };
}

async function produceRun(sw: Spillway, topic: string, count: number): Promise<number> {
  const pool = payloadPool(valueBytes);
  const producer = sw.producer(producerOptions);
  const ring = new Array<Promise<SendResult> | undefined>(windowMessages);
  const started = performance.now();
  try {
    for (let sent = 0; sent < count; sent++) {
      const slot = sent % windowMessages;
      const oldest = ring[slot];
      if (oldest !== undefined) await oldest;
      ring[slot] = producer.send(topic, { value: pool[sent % pool.length]! });
    }
    await Promise.all(ring.filter((promise) => promise !== undefined));
  } finally {
    await producer.close();
  }
  return (count / (performance.now() - started)) * 1000;
}

async function consumeRun(sw: Spillway, topic: string, count: number): Promise<number> {
  const consumer = sw.consumer({ topics: [topic], from: 'earliest', maxWaitMs: 100 });
  let seen = 0;
  const started = performance.now();
  try {
    for await (const message of consumer) {
      if (message.value?.length !== valueBytes) throw new Error(`${topic}: a value of the wrong size`);
      if (++seen >= count) break;
    }
  } finally {
    await consumer.close();
  }
  return (count / (performance.now() - started)) * 1000;
}

/**
 * The request path alone, without network or client: PRODUCE requests of 100 records of 100 B
 * dispatched straight to an in-process broker (durability none), with and without authentication
 * (a session carrying a principal whose rule is a prefix, the access table checked on every
 * request), alternating in rounds. CPU-bound in this one process, so less disturbed by the
 * machine's other load than the end-to-end cases. Returns µs per request of each round.
 */
async function requestPathCase(
  scratchDir: string,
  rounds: number,
  requests: number,
  tokenHash: string,
): Promise<{ plain: number[]; auth: number[] }> {
  // In-memory logs: no file system in the measurement, only the request path's CPU.
  const broker = await Broker.open({
    dataDir: path.join(scratchDir, 'request-path'),
    durability: 'none',
    logFactory: memoryLogFactory,
  });
  try {
    const builder = new BatchBuilder();
    const value = Buffer.alloc(valueBytes, 0x61);
    for (let i = 0; i < 100; i++) builder.append({ value });
    const batch = builder.finishCopy({ crc32c });
    const config = parseAuthConfig(
      {
        principals: [
          {
            name: 'bench',
            tokenHash,
            allow: [{ resource: 'topic', name: 'bench.*', operations: ['produce'] }],
          },
        ],
      },
      'bench',
    );
    const principal = config.principals.get('bench')!;
    const plainSession = broker.sessions.open({ kind: 'websocket', transport: null });
    const authSession = broker.sessions.open({ kind: 'websocket', transport: null });
    authSession.authenticate(principal);
    const plainOptions: DispatchOptions = { session: plainSession, brokerVersion: 'bench' };
    const authOptions: DispatchOptions = {
      session: authSession,
      brokerVersion: 'bench',
      security: { authenticate: async () => principal },
    };
    const measure = async (options: DispatchOptions): Promise<number> => {
      await broker.topics.create('bench.path', { partitions: 1, durability: 'none' });
      const started = performance.now();
      for (let i = 0; i < requests; i++) {
        const answer = await dispatch(
          broker,
          {
            opcode: Opcode.produce,
            flags: 0,
            correlationId: i + 1,
            header: { topic: 'bench.path', partition: 0 },
            body: batch,
          },
          options,
        );
        if ((answer.flags & FrameFlags.error) !== 0)
          throw new Error(`produce failed: ${JSON.stringify(answer.header)}`);
      }
      const elapsedUs = (performance.now() - started) * 1000;
      await broker.topics.delete('bench.path'); // frees the in-memory log
      return elapsedUs / requests;
    };
    const plain: number[] = [];
    const auth: number[] = [];
    await measure(plainOptions); // warm-up
    await measure(authOptions);
    for (let round = 0; round < rounds; round++) {
      if (round % 2 === 0) {
        plain.push(await measure(plainOptions));
        auth.push(await measure(authOptions));
      } else {
        auth.push(await measure(authOptions));
        plain.push(await measure(plainOptions));
      }
    }
    await plainSession.close();
    await authSession.close();
    return { plain, auth };
  } finally {
    await broker.close();
  }
}

function spread(values: readonly number[]): string {
  return `runs ${values.map((value) => Math.round(value).toLocaleString('en-US')).join(', ')}`;
}

async function run(context: BenchContext): Promise<BenchRow[]> {
  const { quick, scratchDir, log } = context;
  const messages = quick ? 20_000 : 500_000;
  const rounds = quick ? 1 : 3;
  const loadAtStart = loadText();
  const token = newToken('bench');
  const authFile = path.join(scratchDir, 'auth.json');
  const parts = splitToken(token)!;
  writeFileSync(
    authFile,
    JSON.stringify({
      principals: [
        {
          name: parts.name,
          tokenHash: await hashSecret(parts.secret),
          allow: [{ resource: 'topic', name: 'bench.*', operations: ['admin', 'produce', 'consume'] }],
        },
      ],
    }),
    { mode: 0o600 },
  );
  const directory = (name: string) => {
    const made = path.join(scratchDir, name);
    mkdirSync(made, { recursive: true });
    return made;
  };
  const configurations: Configuration[] = [];
  const rows: BenchRow[] = [];
  try {
    configurations.push({
      name: 'plain',
      broker: await BrokerChild.start(directory('plain'), log),
      options: {},
      produced: [],
      consumed: [],
      produceCpu: [],
      consumeCpu: [],
    });
    configurations.push({
      name: 'auth',
      broker: await BrokerChild.start(directory('auth'), log, ['--auth-file', authFile]),
      options: { token },
      produced: [],
      consumed: [],
      produceCpu: [],
      consumeCpu: [],
    });
    const tls = openssl(directory('tls'));
    if (typeof tls === 'string') {
      log(`security: the auth+tls case is skipped: ${tls}`);
    } else {
      configurations.push({
        name: 'auth+tls',
        broker: await BrokerChild.start(
          directory('auth-tls'),
          log,
          ['--auth-file', authFile, '--tls-cert', tls.cert, '--tls-key', tls.key],
          'wss',
        ),
        options: { token, ca: readFileSync(tls.cert) },
        produced: [],
        consumed: [],
        produceCpu: [],
        consumeCpu: [],
      });
    }
    // One unreported warm-up per configuration (the client's JIT, the brokers' first segments).
    for (const configuration of configurations) {
      const sw = await Spillway.connect(configuration.broker.url, configuration.options);
      try {
        await sw.admin.createTopic('bench.warm-up', { partitions, durability: 'none' });
        await produceRun(sw, 'bench.warm-up', Math.min(messages, 50_000));
        await consumeRun(sw, 'bench.warm-up', Math.min(messages, 50_000));
        await sw.admin.deleteTopic('bench.warm-up');
      } finally {
        await sw.close();
      }
    }
    for (let round = 0; round < rounds; round++) {
      // Each round starts with another configuration: drift of the shared machine spreads evenly.
      const order = configurations.map(
        (_, index) => configurations[(index + round) % configurations.length]!,
      );
      for (const configuration of order) {
        const sw = await Spillway.connect(configuration.broker.url, configuration.options);
        try {
          const topic = `bench.r${round}`;
          await sw.admin.createTopic(topic, { partitions, durability: 'none' });
          const pid = configuration.broker.pid;
          let cpu = cpuMicros(pid);
          configuration.produced.push(await produceRun(sw, topic, messages));
          configuration.produceCpu.push(((cpuMicros(pid) - cpu) / messages) * 1000);
          cpu = cpuMicros(pid);
          configuration.consumed.push(await consumeRun(sw, topic, messages));
          configuration.consumeCpu.push(((cpuMicros(pid) - cpu) / messages) * 1000);
          await sw.admin.deleteTopic(topic);
        } finally {
          await sw.close();
        }
        log(
          `security round ${round + 1}/${rounds} ${configuration.name}: produce ${Math.round(configuration.produced.at(-1)!)} msg/s, consume ${Math.round(configuration.consumed.at(-1)!)} msg/s`,
        );
      }
    }
  } finally {
    for (const configuration of configurations) await configuration.broker.stop();
  }
  const pathRounds = quick ? 2 : 7;
  const path100 = await requestPathCase(
    scratchDir,
    pathRounds,
    quick ? 200 : 2000,
    await hashSecret('unused'),
  );
  const pathRatio = median(path100.auth) / median(path100.plain);
  const pairRatios = path100.auth.map((auth, index) => auth / path100.plain[index]!);
  // The check itself: authorize() of a PRODUCE header against a prefix rule (cached answer).
  const access = new AccessList([{ resource: 'topic', name: 'bench.*', operations: ['produce'] }]);
  const header = { topic: 'bench.path', partition: 0 };
  const calls = quick ? 100_000 : 2_000_000;
  const checkNs: number[] = [];
  for (let round = 0; round < 3; round++) {
    const started = performance.now();
    for (let i = 0; i < calls; i++) authorize(access, 'bench', Opcode.produce, header);
    checkNs.push(((performance.now() - started) * 1e6) / calls);
  }
  rows.push(
    {
      suite: suiteName,
      name: 'request path: PRODUCE of 100 x 100 B, plain',
      value: median(path100.plain),
      unit: 'µs/request',
      detail: `in-process dispatch, ${pathRounds} alternating rounds, ${spread(path100.plain)}`,
    },
    {
      suite: suiteName,
      name: 'request path: PRODUCE of 100 x 100 B, auth+ACL',
      value: median(path100.auth),
      unit: 'µs/request',
      detail: spread(path100.auth),
    },
    {
      suite: suiteName,
      name: 'request path ratio auth / plain',
      value: pathRatio,
      unit: 'x',
      detail: `target <= 1.05 (auth+ACL overhead <= 5 %): ${pathRatio <= 1.05 ? 'met' : 'not met'}; median of per-round ratios ${median(pairRatios).toFixed(3)}`,
    },
    {
      suite: suiteName,
      name: 'authorize() of a PRODUCE header (prefix rule)',
      value: median(checkNs),
      unit: 'ns/call',
      detail: `${calls} calls x 3, ${spread(checkNs)}; ${((median(checkNs) / 1000 / median(path100.plain)) * 100).toFixed(2)} % of a plain PRODUCE of 100 records`,
    },
  );
  const load = `load ${loadAtStart} -> ${loadText()}`;
  const plain = configurations[0]!;
  for (const configuration of configurations) {
    for (const phase of ['produce', 'consume'] as const) {
      const values = phase === 'produce' ? configuration.produced : configuration.consumed;
      rows.push({
        suite: suiteName,
        name: `${phase} 100 B, ${configuration.name}`,
        value: median(values),
        unit: 'msg/s',
        detail: `${messages} messages, 1 client, ${spread(values)}; ${load}`,
      });
      const cpu = phase === 'produce' ? configuration.produceCpu : configuration.consumeCpu;
      rows.push({
        suite: suiteName,
        name: `${phase} 100 B, ${configuration.name}: broker CPU per 1,000 messages`,
        value: median(cpu),
        unit: 'µs',
        detail: spread(cpu),
      });
      if (configuration !== plain) {
        const plainCpu = median(phase === 'produce' ? plain.produceCpu : plain.consumeCpu);
        rows.push({
          suite: suiteName,
          name: `${phase} broker CPU ratio ${configuration.name} / plain`,
          value: median(cpu) / plainCpu,
          unit: 'x',
          detail:
            configuration.name === 'auth'
              ? `target <= 1.05 (auth+ACL overhead <= 5 %): ${median(cpu) / plainCpu <= 1.05 ? 'met' : 'not met'}`
              : 'TLS with auth: reported, no target',
        });
        const base = median(phase === 'produce' ? plain.produced : plain.consumed);
        const ratio = median(values) / base;
        rows.push({
          suite: suiteName,
          name: `${phase} ratio ${configuration.name} / plain`,
          value: ratio,
          unit: 'x',
          detail:
            configuration.name === 'auth'
              ? `target >= 0.95 (auth+ACL overhead <= 5 %): ${ratio >= 0.95 ? 'met' : 'not met'}`
              : 'TLS with auth: reported, no target',
        });
      }
    }
  }
  return rows;
}

export const suite: BenchSuite = { name: suiteName, run };
