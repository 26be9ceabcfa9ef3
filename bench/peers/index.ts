/**
 * Runs the peer brokers through the common workload (see peer.ts) and reports BenchRows of the suite
 * 'peers'. A peer that cannot run here (not installed, unsupported setting, does not start) is
 * reported as a row `<peer>: unavailable` (unit 'n/a', value 0, the reason in the detail) and in the
 * log; one that fails while measured, as `<peer>: failed`. Nothing is faked.
 *
 * Per peer: start; `runs` times (produce into a fresh stream, then consume it back); one latency run;
 * stop. Figures are medians over the runs. Every phase is capped in time, so a full run stays within
 * a few minutes per peer and a quick run within seconds (plus RabbitMQ's ~7 s boot).
 */
import * as os from 'node:os';
import { type BenchRow, median } from '../report.js';
import { NatsJetStreamPeer } from './nats.js';
import { type Peer, PeerUnavailableError } from './peer.js';
import { RabbitmqQuorumPeer } from './rabbitmq.js';
import { RedisStreamsPeer } from './redis.js';

export const peersSuiteName = 'peers';

/** The peers in the order they run, by id. Select with an id or the part before its first '-' ('redis'). */
export const peerFactories: ReadonlyMap<string, () => Peer> = new Map<string, () => Peer>([
  ['nats-default', () => new NatsJetStreamPeer('default')],
  ['nats-always', () => new NatsJetStreamPeer('always')],
  ['redis-everysec', () => new RedisStreamsPeer('everysec')],
  ['redis-always', () => new RedisStreamsPeer('always')],
  ['rabbitmq-quorum', () => new RabbitmqQuorumPeer()],
]);

/** The workload's sizes; Spillway's suite uses the same through `measurePeer`. */
export interface PeerWorkload {
  runs: number;
  messages: number;
  messageBytes: number;
  producers: number;
  consumers: number;
  /** Cap of each produce and each consume phase. */
  phaseDurationMsMax: number;
  latencyRatePerSecond: number;
  latencyDurationMs: number;
}

export function peerWorkload(quick: boolean): PeerWorkload {
  return quick
    ? {
        runs: 1,
        messages: 5000,
        messageBytes: 100,
        producers: 1,
        consumers: 1,
        phaseDurationMsMax: 3000,
        latencyRatePerSecond: 500,
        latencyDurationMs: 1000,
      }
    : {
        runs: 3,
        messages: 200_000,
        messageBytes: 100,
        producers: 1,
        consumers: 1,
        phaseDurationMsMax: 15_000,
        latencyRatePerSecond: 1000,
        latencyDurationMs: 5000,
      };
}

export interface RunPeersOptions {
  /** Data and logs of the peers go under it. */
  scratchDir: string;
  quick: boolean;
  /** Ids or id prefixes of `peerFactories` ('redis', 'nats-default'); default all. */
  peers?: readonly string[];
  log: (message: string) => void;
  /** Override the workload (tests). */
  workload?: PeerWorkload;
}

/** The ids selected by `names` (ids or the part before the first '-'); throws on a name that matches none. */
export function selectPeers(names: readonly string[] | undefined): string[] {
  const ids = [...peerFactories.keys()];
  if (names === undefined) return ids;
  for (const name of names) {
    if (!ids.some((id) => matches(id, name))) {
      throw new Error(`unknown peer '${name}'; known: ${ids.join(', ')} (or nats, redis, rabbitmq)`);
    }
  }
  return ids.filter((id) => names.some((name) => matches(id, name)));
}

function matches(id: string, name: string): boolean {
  return id === name || id.split('-')[0] === name;
}

export async function runPeers(options: RunPeersOptions): Promise<BenchRow[]> {
  const workload = options.workload ?? peerWorkload(options.quick);
  const rows: BenchRow[] = [];
  for (const id of selectPeers(options.peers)) {
    const peer = peerFactories.get(id)!();
    rows.push(...(await measurePeer(peer, workload, options.scratchDir, options.log)));
  }
  return rows;
}

/**
 * Starts `peer`, runs the workload, stops it (also on failure) and returns its rows. Unavailability
 * and failures become rows, so one broken peer does not hide the others' figures.
 */
export async function measurePeer(
  peer: Peer,
  workload: PeerWorkload,
  scratchDir: string,
  log: (message: string) => void,
): Promise<BenchRow[]> {
  const problemRow = (what: 'unavailable' | 'failed', error: unknown): BenchRow => {
    const reason = error instanceof Error ? error.message : String(error);
    const stack = error instanceof Error && what === 'failed' ? `\n${error.stack}` : '';
    log(`${peer.name}: ${what}: ${reason}${stack}`);
    return { suite: peersSuiteName, name: `${peer.name}: ${what}`, value: 0, unit: 'n/a', detail: reason };
  };
  const startMs = performance.now();
  try {
    try {
      await peer.start(scratchDir);
    } catch (error) {
      if (error instanceof PeerUnavailableError) return [problemRow('unavailable', error)];
      throw error;
    }
    log(
      `${peer.name}: started (${peer.version ?? 'version unknown'}) in ${Math.round(performance.now() - startMs)} ms`,
    );
    return await measureStarted(peer, workload, log);
  } catch (error) {
    return [problemRow('failed', error)];
  } finally {
    await peer.stop();
    log(`${peer.name}: stopped; ${((performance.now() - startMs) / 1000).toFixed(1)} s in all`);
  }
}

async function measureStarted(
  peer: Peer,
  workload: PeerWorkload,
  log: (message: string) => void,
): Promise<BenchRow[]> {
  const load = os.loadavg()[0]!;
  const produced: { rate: number; bandwidth: number; acked: number }[] = [];
  const consumed: { rate: number; bandwidth: number; received: number }[] = [];
  for (let run = 0; run < workload.runs; run += 1) {
    const produce = await peer.produce({
      messages: workload.messages,
      messageBytes: workload.messageBytes,
      producers: workload.producers,
      durationMsMax: workload.phaseDurationMsMax,
    });
    if (produce.acked === 0) throw new Error('no message was acknowledged');
    const consume = await peer.consume({
      messages: produce.acked,
      consumers: workload.consumers,
      durationMsMax: workload.phaseDurationMsMax,
    });
    if (consume.received < produce.acked) {
      log(
        `${peer.name}: run ${run + 1}: consumed ${consume.received} of ${produce.acked} within the time cap`,
      );
    }
    produced.push({
      rate: produce.messagesPerSecond,
      bandwidth: produce.bytesPerSecond / 1e6,
      acked: produce.acked,
    });
    consumed.push({
      rate: consume.messagesPerSecond,
      bandwidth: consume.bytesPerSecond / 1e6,
      received: consume.received,
    });
    log(
      `${peer.name}: run ${run + 1}/${workload.runs}: produce ${Math.round(produce.messagesPerSecond)} msg/s ` +
        `(${produce.acked} acked), consume ${Math.round(consume.messagesPerSecond)} msg/s (${consume.received})`,
    );
  }
  const latency = await peer.endToEndLatency({
    ratePerSecond: workload.latencyRatePerSecond,
    durationMs: workload.latencyDurationMs,
    messageBytes: workload.messageBytes,
  });
  log(`${peer.name}: latency p50 ${latency.p50Us} µs, p99 ${latency.p99Us} µs, p99.9 ${latency.p999Us} µs`);

  const size = `${workload.messageBytes}B`;
  const producers = `${workload.producers} producer${workload.producers === 1 ? '' : 's'}`;
  const consumers = `${workload.consumers} consumer${workload.consumers === 1 ? '' : 's'}`;
  const context = `${peer.version ?? 'version unknown'}; 1-min load average ${load.toFixed(1)} on ${os.cpus().length} cores`;
  const seeRow = 'durability: see the produce row';
  const row = (name: string, value: number, unit: string, detail: string): BenchRow => ({
    suite: peersSuiteName,
    name: `${peer.name} ${name}`,
    value,
    unit,
    detail,
  });
  const ackedCounts = produced.map((entry) => entry.acked).join('/');
  const receivedCounts = consumed.map((entry) => entry.received).join('/');
  const latencyDetail =
    `${workload.latencyRatePerSecond} msg/s for ${workload.latencyDurationMs} ms, ${latency.measured} measured, ` +
    `${latency.lost} lost, publisher lag max ${latency.producerLagMaxMs.toFixed(1)} ms`;
  return [
    row(
      `produce ${size} ${producers}`,
      median(produced.map((entry) => entry.rate)),
      'msg/s',
      `${spread(produced.map((entry) => entry.rate))}, ${ackedCounts} acknowledged per run (cap ` +
        `${workload.messages} messages or ${workload.phaseDurationMsMax / 1000} s); ${peer.durability}; ${context}`,
    ),
    row(
      `produce ${size} ${producers}, bandwidth`,
      median(produced.map((entry) => entry.bandwidth)),
      'MB/s',
      `payload bytes only, ${spread(produced.map((entry) => entry.bandwidth))}; ${seeRow}`,
    ),
    row(
      `consume ${size} ${consumers}`,
      median(consumed.map((entry) => entry.rate)),
      'msg/s',
      `${spread(consumed.map((entry) => entry.rate))}, ${receivedCounts} read back per run, acknowledged per batch; ${seeRow}`,
    ),
    row(
      `consume ${size} ${consumers}, bandwidth`,
      median(consumed.map((entry) => entry.bandwidth)),
      'MB/s',
      `payload bytes only, ${spread(consumed.map((entry) => entry.bandwidth))}; ${seeRow}`,
    ),
    row(`end-to-end latency p50 ${size}`, latency.p50Us, 'µs', `${latencyDetail}; ${seeRow}`),
    row(`end-to-end latency p99 ${size}`, latency.p99Us, 'µs', latencyDetail),
    row(
      `end-to-end latency p99.9 ${size}`,
      latency.p999Us,
      'µs',
      `${latencyDetail}, max ${latency.maxUs} µs`,
    ),
  ];
}

/** 'median of 3 (3,100–3,500)' or '1 run'. */
function spread(values: readonly number[]): string {
  if (values.length === 1) return '1 run';
  const format = (value: number): string =>
    value >= 100 ? Math.round(value).toLocaleString('en-US') : value.toPrecision(3);
  return `median of ${values.length} (${format(Math.min(...values))}–${format(Math.max(...values))})`;
}
