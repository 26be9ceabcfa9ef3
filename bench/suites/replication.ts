/**
 * Replicated produce (docs/CLUSTER-REPLICATION.md): RF=3 with `acks: 'all'` against one broker, in
 * the same run, both as child processes of the same script (bench/replica-broker-child.ts) on
 * 127.0.0.1, durability `always` (the issue's case: acknowledged = fdatasync'd on every in-sync
 * replica).
 *
 * Cases: 100 B and 16 KiB values, keyless, one producer client, 4 partitions (each replicated by its
 * own follower fetch loop), lingerMs 1, batchBytes 256 KiB, at most 8 MiB of values unacknowledged,
 * the native CRC32C in the client (what the `spillway` root entry registers, as the other network
 * suites do: bench/spillway-producer.ts; before session 8 this suite's client ran the TypeScript one,
 * 2.7 ms of CPU per MB at 16 KiB on the cores the brokers share).
 * Per run: 200k messages of 100 B or 20k of 16 KiB (quick: a tenth), time cap 10 s, a fresh topic;
 * single and replicated runs alternate, 3 of each (quick: 1). Rows: the medians (msg/s, MB/s), the
 * ratio replicated ÷ single (issue 14's target: ≥ 0.5 on this machine, where the three brokers share
 * its cores), the CPU seconds each broker process used per replicated run (/proc, Linux), and the
 * CPU per MB acknowledged of the three RF=3 brokers together against the single broker's (what
 * replication costs in CPU, less sensitive to the machine's other load than throughput), and the
 * machine's idle share during the runs of each kind (/proc/stat, all cores: idle time in a run means
 * latency chains, not the cores, bound it). Each run also logs its rate, every broker's and the
 * client's CPU per MB and the idle share (the evidence an A/B needs, run by run). A child's stdout
 * lines that are not its JSON (V8 traces: `node --trace-deopt dist/bench/main.js ...`) are passed
 * to stderr with the child's name.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { useClientCrc32c } from '../../src/client/client-crc32c.js';
import { type ProducerOptions, type SendResult, Spillway } from '../../src/client/index.js';
import type { PartitionAssignment } from '../../src/cluster/partition-role.js';
import { crc32cImplementation, crc32c as nativeCrc32c } from '../../src/native.js';
import { payloadPool } from '../peers/payload.js';
import { type BenchContext, type BenchRow, type BenchSuite, median } from '../report.js';

const suiteName = 'replication';
const partitions = 4;
const windowBytes = 8 * 1024 * 1024;
const childScript = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'replica-broker-child.js');

class ReplicaChild {
  url = '';
  private seq = 0;
  private readonly waiting = new Map<number, (failure: string | null) => void>();

  private constructor(private readonly child: ChildProcess) {}

  get pid(): number {
    return this.child.pid!;
  }

  static start(directory: string, id: number, name: string): Promise<ReplicaChild> {
    const child = spawn(process.execPath, [...process.execArgv, childScript, directory, String(id)], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    const replica = new ReplicaChild(child);
    let pending = '';
    return new Promise((resolve, reject) => {
      child.stdout!.setEncoding('utf8');
      child.stdout!.on('data', (chunk: string) => {
        const lines = (pending + chunk).split('\n');
        pending = lines.pop()!;
        for (const text of lines) {
          // Lines that are not the child's JSON (V8 traces of a `--trace-deopt` run) go to stderr.
          if (!text.startsWith('{')) {
            process.stderr.write(`[${name}] ${text}\n`);
            continue;
          }
          const line = JSON.parse(text) as {
            listening?: string;
            done?: number;
            failed?: number;
            message?: string;
          };
          if (line.listening !== undefined) {
            replica.url = line.listening;
            resolve(replica);
          } else if (line.done !== undefined) replica.waiting.get(line.done)?.(null);
          else if (line.failed !== undefined) replica.waiting.get(line.failed)?.(line.message ?? 'failed');
        }
      });
      child.once('exit', () => reject(new Error(`replica child ${id} exited`)));
    });
  }

  assign(assignment: PartitionAssignment, endpoints: Array<[number, string]>): Promise<void> {
    const seq = ++this.seq;
    return new Promise((resolve, reject) => {
      this.waiting.set(seq, (failure) => (failure === null ? resolve() : reject(new Error(failure))));
      this.child.stdin!.write(`${JSON.stringify({ seq, assign: assignment, endpoints })}\n`);
    });
  }

  /** CPU seconds used so far (utime + stime), NaN where /proc is not. */
  cpuSeconds(): number {
    try {
      const stat = readFileSync(`/proc/${this.pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      return (Number(fields[11]) + Number(fields[12])) / 100;
    } catch {
      return Number.NaN;
    }
  }

  stop(): Promise<void> {
    return new Promise((resolve) => {
      if (this.child.exitCode !== null) return resolve();
      this.child.once('exit', () => resolve());
      this.child.kill('SIGTERM');
    });
  }
}

/**
 * The machine's CPU ticks so far from /proc/stat (all cores): [idle + iowait, total]; NaNs where
 * /proc is not. Idle time during a run means the cores were not what bound it (latency chains were).
 */
function machineTicks(): [number, number] {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!;
    const ticks = line.trim().split(/\s+/).slice(1).map(Number);
    const total = ticks.reduce((sum, value) => sum + value, 0);
    return [ticks[3]! + ticks[4]!, total];
  } catch {
    return [Number.NaN, Number.NaN];
  }
}

/** Registers the native CRC32C for the bench's client (at the suite's start, not at import). */
function useNativeClientCrc32c(): void {
  useClientCrc32c(nativeCrc32c, `native ${crc32cImplementation()}`);
}

async function produceRun(
  url: string,
  topic: string,
  valueBytes: number,
  count: number,
  capMs: number,
): Promise<[number, number]> {
  const sw = await Spillway.connect(url, { clientId: 'bench-replication' });
  const options: ProducerOptions = { lingerMs: 1, batchBytes: 256 * 1024, acks: 'all' };
  const producer = sw.producer(options);
  const pool = payloadPool(valueBytes);
  const window = Math.max(1, Math.floor(windowBytes / valueBytes));
  const ring = new Array<Promise<SendResult> | undefined>(window);
  await producer.send(topic, { value: pool[0]! });
  const started = performance.now();
  const deadline = started + capMs;
  let sent = 0;
  try {
    while (sent < count && (sent % 256 !== 0 || performance.now() < deadline)) {
      const slot = sent % window;
      const oldest = ring[slot];
      if (oldest !== undefined) await oldest;
      ring[slot] = producer.send(topic, { value: pool[sent % pool.length]! });
      sent++;
    }
    await Promise.all(ring.filter((promise) => promise !== undefined));
  } finally {
    await producer.close();
    await sw.close();
  }
  return [sent, performance.now() - started];
}

/**
 * The value sizes measured: 100 B and 16 KiB, or those of SPILLWAY_BENCH_REPLICATION_SIZES (bytes,
 * comma-separated: an A/B of one size, a profile).
 */
function valueSizes(): number[] {
  const text = process.env['SPILLWAY_BENCH_REPLICATION_SIZES'];
  if (text === undefined || text === '') return [100, 16 * 1024];
  const sizes = text.split(',').map(Number);
  if (!sizes.every((size) => Number.isSafeInteger(size) && size > 0)) {
    throw new Error(`SPILLWAY_BENCH_REPLICATION_SIZES: positive integers expected, got '${text}'`);
  }
  return sizes;
}

async function run(context: BenchContext): Promise<BenchRow[]> {
  const runs = context.quick ? 1 : 3;
  const rows: BenchRow[] = [];
  useNativeClientCrc32c();
  const single = await ReplicaChild.start(mkdtempSync(path.join(context.scratchDir, 'single-')), 1, 'single');
  const cluster: ReplicaChild[] = [];
  try {
    for (let id = 1; id <= 3; id++) {
      cluster.push(
        await ReplicaChild.start(
          mkdtempSync(path.join(context.scratchDir, `replica-${id}-`)),
          id,
          `replica ${id}`,
        ),
      );
    }
    const endpoints: Array<[number, string]> = cluster.map((child, i) => [i + 1, child.url]);
    let topicNumber = 0;
    const once = async (
      replicated: boolean,
      valueBytes: number,
      count: number,
    ): Promise<[number, number[], number, number, number]> => {
      const topic = `repl-${topicNumber++}`;
      const targets = replicated ? cluster : [single];
      for (const target of targets) {
        const sw = await Spillway.connect(target.url);
        await sw.admin.createTopic(topic, { partitions, durability: 'always' });
        await sw.close();
      }
      if (replicated) {
        for (let partition = 0; partition < partitions; partition++) {
          const assignment: PartitionAssignment = {
            topic,
            partition,
            replicas: [1, 2, 3],
            leaderId: 1,
            leaderEpoch: 1,
            isr: [1, 2, 3],
            minInSyncReplicas: 2,
          };
          for (const child of cluster) await child.assign(assignment, endpoints);
        }
      }
      const cpuBefore = targets.map((target) => target.cpuSeconds());
      const clientBefore = process.cpuUsage();
      const [idleBefore, ticksBefore] = machineTicks();
      const [acked, elapsedMs] = await produceRun(targets[0]!.url, topic, valueBytes, count, 10_000);
      const [idleAfter, ticksAfter] = machineTicks();
      const clientUsage = process.cpuUsage(clientBefore);
      const cpu = targets.map((target, i) => target.cpuSeconds() - cpuBefore[i]!);
      const clientSeconds = (clientUsage.user + clientUsage.system) / 1e6;
      const idle = (idleAfter - idleBefore) / (ticksAfter - ticksBefore);
      const mb = (acked * valueBytes) / 1e6;
      context.log(
        `${suiteName}: ${replicated ? 'RF=3' : 'single'} ${(mb / (elapsedMs / 1000)).toFixed(1)} MB/s, CPU ms/MB brokers ${cpu.map((seconds) => ((seconds * 1000) / mb).toFixed(2)).join(' ')}, client ${((clientSeconds * 1000) / mb).toFixed(2)}, machine idle ${(idle * 100).toFixed(0)} %`,
      );
      return [acked / (elapsedMs / 1000), cpu, mb, clientSeconds, idle];
    };
    for (const valueBytes of valueSizes()) {
      const count = Math.round((valueBytes <= 1024 ? 200_000 : 20_000) / (context.quick ? 10 : 1));
      const singleRates: number[] = [];
      const replicatedRates: number[] = [];
      const cpus: number[][] = [[], [], []];
      /** CPU ms per MB of values acknowledged: the single broker, and the three RF=3 brokers together. */
      const singleCpuPerMb: number[] = [];
      const replicatedCpuPerMb: number[] = [];
      /** The bench process's (the producer client's) CPU ms per MB, in the single and the RF=3 runs. */
      const singleClientCpuPerMb: number[] = [];
      const replicatedClientCpuPerMb: number[] = [];
      /** The machine's idle share (all cores) during the single and the RF=3 runs. */
      const singleIdles: number[] = [];
      const replicatedIdles: number[] = [];
      for (let i = 0; i < runs; i++) {
        context.log(`${suiteName}: ${valueBytes} B run ${i + 1}/${runs}`);
        const [singleRate, singleCpu, singleMb, singleClient, singleIdle] = await once(
          false,
          valueBytes,
          count,
        );
        singleRates.push(singleRate);
        singleIdles.push(singleIdle);
        singleCpuPerMb.push((singleCpu[0]! * 1000) / singleMb);
        singleClientCpuPerMb.push((singleClient * 1000) / singleMb);
        const [rate, cpu, mb, client, idle] = await once(true, valueBytes, count);
        replicatedRates.push(rate);
        replicatedIdles.push(idle);
        replicatedCpuPerMb.push((cpu.reduce((sum, seconds) => sum + seconds, 0) * 1000) / mb);
        replicatedClientCpuPerMb.push((client * 1000) / mb);
        for (const [broker, seconds] of cpu.entries()) cpus[broker]!.push(seconds);
      }
      const size = valueBytes % 1024 === 0 ? `${valueBytes / 1024} KiB` : `${valueBytes} B`;
      const singleRate = median(singleRates);
      const replicatedRate = median(replicatedRates);
      const detail = `${partitions} partitions, durability always, ${runs} runs, medians`;
      rows.push(
        {
          suite: suiteName,
          name: `single broker, ${size}`,
          value: Math.round(singleRate),
          unit: 'msg/s',
          detail,
        },
        {
          suite: suiteName,
          name: `RF=3 acks all, ${size}`,
          value: Math.round(replicatedRate),
          unit: 'msg/s',
          detail,
        },
        {
          suite: suiteName,
          name: `RF=3 acks all ÷ single, ${size}`,
          value: Number((replicatedRate / singleRate).toFixed(2)),
          unit: '×',
          detail: `target ≥ 0.5; ${((replicatedRate * valueBytes) / 1e6).toFixed(1)} MB/s replicated`,
        },
        {
          suite: suiteName,
          name: `RF=3 CPU per broker per run, ${size}`,
          value: Number(median(cpus[0]!).toFixed(2)),
          unit: 's (leader)',
          detail: `followers ${median(cpus[1]!).toFixed(2)} s and ${median(cpus[2]!).toFixed(2)} s`,
        },
        {
          suite: suiteName,
          name: `CPU per MB acknowledged, RF=3 (3 brokers) ÷ single, ${size}`,
          value: Number((median(replicatedCpuPerMb) / median(singleCpuPerMb)).toFixed(2)),
          unit: '×',
          detail: `${median(replicatedCpuPerMb).toFixed(1)} vs ${median(singleCpuPerMb).toFixed(1)} CPU ms per MB of values (the machine's cores are shared: the CPU the copies cost)`,
        },
        {
          suite: suiteName,
          name: `client CPU per MB acknowledged, RF=3 run ÷ single run, ${size}`,
          value: Number((median(replicatedClientCpuPerMb) / median(singleClientCpuPerMb)).toFixed(2)),
          unit: '×',
          detail: `${median(replicatedClientCpuPerMb).toFixed(1)} vs ${median(singleClientCpuPerMb).toFixed(1)} CPU ms per MB (the bench process: the producer client, on the same cores)`,
        },
        {
          suite: suiteName,
          name: `machine idle during the runs, RF=3 runs, ${size}`,
          value: Math.round(median(replicatedIdles) * 100),
          unit: '%',
          detail: `single-broker runs ${Math.round(median(singleIdles) * 100)} % (/proc/stat idle + iowait of all cores: idle time means latency, not the cores, bound the run)`,
        },
      );
    }
  } finally {
    await single.stop();
    // Followers first: a leader stopping under them only makes them warn.
    for (const child of [...cluster].reverse()) await child.stop();
  }
  return rows;
}

export const suite: BenchSuite = { name: suiteName, run };
