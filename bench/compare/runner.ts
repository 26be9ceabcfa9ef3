/**
 * Runs the comparison: for each system and durability mode (see targets.ts) start the system once,
 * run every cell of the matrix on it (produce + consume per size, client count and partition count;
 * latency per size at a fixed rate; the sweep of ascending rates), stop it by PID, go on with the
 * next. One system runs at a time, so none competes with another for the 2 cores or the disk.
 *
 * Bounds: every phase is capped by `durationMs` (and the peers' own request timeouts); on top, each
 * cell runs under a watchdog (its time budget plus slack): a cell that overruns it is recorded as
 * failed and its system is stopped (which ends whatever it was waiting for) and skipped for the rest.
 * Two failed cells in a row also skip the rest of that system. Failures are reported, never hidden.
 *
 * Progress goes to `log`, one line per step: `[12/48] spillway always 1KiB 4p 1part: produce 123,456
 * msg/s, consume 456,789 msg/s`.
 */
import { mkdirSync } from 'node:fs';
import * as path from 'node:path';
import type { Durability } from '../../src/protocol/types.js';
import { latencyDrainMs } from '../peers/load.js';
import { type LatencyResult, type Peer, PeerUnavailableError } from '../peers/peer.js';
import type { SpillwayProduceOptions } from '../peers/spillway.js';
import { waitAtMost } from '../peers/wait.js';
import { median } from '../report.js';
import { type CompareOptions, formatSize } from './options.js';
import {
  type CompareFailure,
  type CompareResults,
  computeRatios,
  type LatencyMeasurement,
  type ReferenceFigures,
  type TargetReport,
  type ThroughputMeasurement,
} from './results.js';
import { type CompareTarget, compareTarget } from './targets.js';

export interface RunCompareContext {
  /** Data and logs of the systems go under it (a subdirectory per system and mode). */
  scratchDir: string;
  reference: ReferenceFigures;
  log: (line: string) => void;
  /** Replaces `compareTarget` (tests). */
  targetFor?: (system: CompareTarget['system'], durability: Durability) => CompareTarget;
}

/** Payload bytes of the queue scenario (per-message ack): small messages, where the ack cost shows. */
export const queueMessageBytes = 100;

/** Added to each cell's own time budget before the watchdog gives up on it. */
const watchdogSlackMs = 45_000;

/** A sweep step is past what the system sustains when the median latency exceeds this. */
const sweepSaturatedP50Us = 100_000;

/** ...or when the bench process itself fell this far behind the schedule (no longer open loop). */
const sweepSaturatedLagMs = 250;

/** Consecutive failed cells after which the rest of a system's cells are skipped. */
const consecutiveFailuresMax = 2;

/** The cells one target runs, in order. */
interface Plan {
  throughput: Array<{ messageBytes: number; clients: number; partitions: number }>;
  /** Queue mode with per-message ack: consumers and partitions, at `queueMessageBytes`. */
  queue: Array<{ clients: number; partitions: number }>;
  latencySizes: number[];
  sweepRates: number[];
  sweepBytes: number;
}

function planFor(target: CompareTarget, options: CompareOptions): Plan {
  const wantsThroughput = options.scenarios.includes('produce') || options.scenarios.includes('consume');
  const partitions = target.partitioned
    ? options.partitions
    : options.partitions.filter((count) => count === 1);
  const throughput = wantsThroughput
    ? options.sizes.flatMap((messageBytes) =>
        options.clients.flatMap((clients) =>
          partitions.map((partitionCount) => ({ messageBytes, clients, partitions: partitionCount })),
        ),
      )
    : [];
  const queue = options.scenarios.includes('queue')
    ? options.clients.flatMap((clients) =>
        partitions.map((partitionCount) => ({ clients, partitions: partitionCount })),
      )
    : [];
  return {
    throughput,
    queue,
    latencySizes: options.scenarios.includes('latency') ? options.sizes : [],
    sweepRates: options.scenarios.includes('sweep') ? options.sweepRatesPerSecond : [],
    sweepBytes: sweepMessageBytes(options.sizes),
  };
}

/** The sweep runs at 1 KiB when it is among the sizes, else at the middle size. */
export function sweepMessageBytes(sizes: readonly number[]): number {
  return sizes.includes(1024) ? 1024 : sizes[Math.floor((sizes.length - 1) / 2)]!;
}

function stepsOf(plan: Plan): number {
  return plan.throughput.length + plan.queue.length + plan.latencySizes.length + plan.sweepRates.length;
}

export async function runCompare(
  options: CompareOptions,
  context: RunCompareContext,
): Promise<CompareResults> {
  const startMs = performance.now();
  const targetFor = context.targetFor ?? compareTarget;
  const targets = options.systems.flatMap((system) =>
    options.durabilities.map((durability) => targetFor(system, durability)),
  );
  const plans = new Map(targets.map((target) => [target, planFor(target, options)] as const));
  let total = targets.reduce(
    (sum, target) => sum + (target.create === undefined ? 0 : stepsOf(plans.get(target)!)),
    0,
  );
  let step = 0;
  const progress = (label: string, text: string): void => {
    step += 1;
    const secondsPerStep = (performance.now() - startMs) / 1000 / step;
    const left = step < total ? ` (~${formatSeconds(secondsPerStep * (total - step))} left)` : '';
    context.log(`[${step}/${total}] ${label}: ${text}${left}`);
  };

  const results: CompareResults = {
    options,
    reference: context.reference,
    targets: [],
    throughput: [],
    latency: [],
    failures: [],
    steps: total,
    durationSeconds: 0,
  };

  for (const target of targets) {
    const plan = plans.get(target)!;
    const report: TargetReport = {
      system: target.system,
      durability: target.durability,
      setting: target.setting,
      guarantee: target.guarantee,
      status: 'measured',
    };
    results.targets.push(report);
    const label = `${target.system} ${target.durability}`;
    if (target.create === undefined) {
      report.status = 'n/a';
      report.reason = target.notApplicable ?? 'no setting for this mode';
      context.log(`${label}: n/a: ${report.reason}`);
      continue;
    }
    if (stepsOf(plan) === 0) continue;
    const peer = target.create();
    const scratch = path.join(context.scratchDir, `${target.system}-${target.durability}`);
    mkdirSync(scratch, { recursive: true });
    const startedMs = performance.now();
    try {
      await peer.start(scratch);
    } catch (error) {
      await peer.stop(); // safe after a failed start: whatever did start is stopped by PID
      report.status = error instanceof PeerUnavailableError ? 'unavailable' : 'failed';
      report.reason = messageOf(error);
      total -= stepsOf(plan);
      context.log(`${label}: ${report.status}: ${report.reason}`);
      continue;
    }
    try {
      report.version = peer.version;
      context.log(
        `${label}: started ${peer.version ?? ''} in ${Math.round(performance.now() - startedMs)} ms`,
      );
      const outcome = await runTarget(target, peer, plan, options, results, progress);
      if (outcome.skippedSteps > 0) {
        total -= outcome.skippedSteps;
        context.log(`${label}: ${outcome.skippedSteps} remaining steps skipped after failures`);
      }
      if (outcome.saturatedSteps > 0) {
        total -= outcome.saturatedSteps;
        context.log(
          `${label}: ${outcome.saturatedSteps} sweep steps above the first rate not sustained not run`,
        );
      }
      if (outcome.failed > 0 && outcome.measured === 0) {
        report.status = 'failed';
        report.reason = results.failures.filter((failure) => matches(failure, target)).at(-1)?.error;
      }
    } finally {
      await peer.stop();
      context.log(`${label}: stopped; ${((performance.now() - startedMs) / 1000).toFixed(1)} s in all`);
    }
  }
  computeRatios(results);
  results.steps = total;
  results.durationSeconds = (performance.now() - startMs) / 1000;
  return results;
}

function matches(failure: CompareFailure, target: CompareTarget): boolean {
  return failure.system === target.system && failure.durability === target.durability;
}

async function runTarget(
  target: CompareTarget,
  peer: Peer,
  plan: Plan,
  options: CompareOptions,
  results: CompareResults,
  progress: (label: string, text: string) => void,
): Promise<{ measured: number; failed: number; skippedSteps: number; saturatedSteps: number }> {
  const { system, durability } = target;
  let measured = 0;
  let failed = 0;
  let consecutiveFailures = 0;
  let remaining = stepsOf(plan);
  let abandoned = false;

  /** Runs one cell under the watchdog; false when the target must be abandoned. */
  const cell = async <T>(what: string, budgetMs: number, run: () => Promise<T>): Promise<T | undefined> => {
    remaining -= 1;
    const running = run();
    running.catch(() => undefined); // observed below; a late rejection after a timeout must not crash
    let value: T | undefined;
    let error: unknown;
    try {
      const settled = await waitAtMost(
        running.then((result) => {
          value = result;
        }),
        budgetMs + watchdogSlackMs,
      );
      if (!settled) {
        error = new Error(`timed out after ${budgetMs + watchdogSlackMs} ms (watchdog); system stopped`);
        abandoned = true;
        await peer.stop(); // ends whatever the cell waits for
      }
    } catch (caught) {
      error = caught;
    }
    if (error === undefined) {
      measured += 1;
      consecutiveFailures = 0;
      return value;
    }
    failed += 1;
    consecutiveFailures += 1;
    if (consecutiveFailures >= consecutiveFailuresMax) abandoned = true;
    results.failures.push({ system, durability, what, error: messageOf(error) });
    progress(`${system} ${durability} ${what}`, `FAILED: ${messageOf(error)}`);
    return undefined;
  };

  const produceOptions = (
    messageBytes: number,
    clients: number,
    partitions: number,
  ): SpillwayProduceOptions => ({
    messages: Math.max(1, Math.min(options.messagesMax, Math.floor(options.bytesMax / messageBytes))),
    messageBytes,
    producers: clients,
    durationMsMax: options.durationMs,
    ...(target.partitioned ? { partitions } : {}),
  });

  /** One round of a throughput cell: a produce, then a consume of what it acknowledged (none if nothing). */
  const produceThenConsume = async (messageBytes: number, clients: number, partitions: number) => {
    const produce = await peer.produce(produceOptions(messageBytes, clients, partitions));
    const consume =
      produce.acked > 0
        ? await peer.consume({
            messages: produce.acked,
            consumers: clients,
            durationMsMax: options.durationMs,
          })
        : undefined;
    return { produce, consume };
  };

  /** Message sizes whose throughput warm-up ran on this system and mode (once per size). */
  const warmedSizes = new Set<number>();

  for (const { messageBytes, clients, partitions } of plan.throughput) {
    if (abandoned) break;
    const what = `${formatSize(messageBytes)} ${clients}p ${partitions}part`;
    const warmUpDue = options.throughputWarmUpMs > 0 && !warmedSizes.has(messageBytes);
    let warmUp: ThroughputWarmUp | undefined;
    const warmUpBudgetMs = warmUpDue ? options.throughputWarmUpMs + 2 * options.durationMs : 0;
    const runs = await cell(what, warmUpBudgetMs + options.runs * 2 * options.durationMs, async () => {
      if (warmUpDue) {
        warmUp = await throughputWarmUp(options.throughputWarmUpMs, async () => {
          const { produce } = await produceThenConsume(messageBytes, 1, 1);
          return Number.isFinite(produce.bytesPerSecond) ? produce.bytesPerSecond / 1e6 : 0;
        });
        warmedSizes.add(messageBytes); // only once it succeeded: a failed one is tried again by the next cell
      }
      const perRun: Array<{
        produce: number;
        produceBytes: number;
        acked: number;
        consume: number;
        consumeBytes: number;
        received: number;
      }> = [];
      for (let run = 0; run < options.runs; run += 1) {
        const { produce, consume } = await produceThenConsume(messageBytes, clients, partitions);
        if (consume === undefined) throw new Error('no message was acknowledged');
        perRun.push({
          produce: produce.messagesPerSecond,
          produceBytes: produce.bytesPerSecond,
          acked: produce.acked,
          consume: consume.messagesPerSecond,
          consumeBytes: consume.bytesPerSecond,
          received: consume.received,
        });
      }
      return perRun;
    });
    if (runs === undefined) continue;
    const base = { system, durability, messageBytes, clients, partitions };
    const produce: ThroughputMeasurement = {
      ...base,
      scenario: 'produce',
      messagesPerSecond: median(runs.map((run) => run.produce)),
      megabytesPerSecond: median(runs.map((run) => run.produceBytes)) / 1e6,
      messages: runs.map((run) => run.acked),
      perRun: runs.map((run) => run.produce),
    };
    const consume: ThroughputMeasurement = {
      ...base,
      scenario: 'consume',
      messagesPerSecond: median(runs.map((run) => run.consume)),
      megabytesPerSecond: median(runs.map((run) => run.consumeBytes)) / 1e6,
      messages: runs.map((run) => run.received),
      perRun: runs.map((run) => run.consume),
    };
    if (warmUp !== undefined) {
      const stated = warmUpNote(warmUp, messageBytes);
      produce.note = stated;
      consume.note = stated;
    }
    const short = runs.filter((run) => run.received < run.acked);
    if (short.length > 0) {
      consume.note = `${consume.note === undefined ? '' : `${consume.note}; `}read back ${short.map((run) => `${run.received} of ${run.acked}`).join(', ')} within the ${options.durationMs} ms cap`;
    }
    if (system === 'spillway') {
      consume.note = [
        consume.note,
        'a log consumer (no group, no acks: the client keeps the position) with reuseReceiveBuffers',
      ]
        .filter(Boolean)
        .join('; ');
    }
    if (options.scenarios.includes('produce')) results.throughput.push(produce);
    if (options.scenarios.includes('consume')) results.throughput.push(consume);
    progress(
      `${system} ${durability} ${what}`,
      `produce ${formatRate(produce.messagesPerSecond)} msg/s (${produce.megabytesPerSecond.toFixed(1)} MB/s), ` +
        `consume ${formatRate(consume.messagesPerSecond)} msg/s`,
    );
  }

  for (const { clients, partitions } of plan.queue) {
    if (abandoned) break;
    const what = `queue ${formatSize(queueMessageBytes)} ${clients}c ${partitions}part`;
    const runs = await cell(what, options.runs * 2 * options.durationMs, async () => {
      const perRun: Array<{ rate: number; bytes: number; acked: number; filled: number }> = [];
      for (let run = 0; run < options.runs; run += 1) {
        const fill = await peer.produce(produceOptions(queueMessageBytes, clients, partitions));
        if (fill.acked === 0) throw new Error('no message was acknowledged');
        const consume = await peer.consume({
          messages: fill.acked,
          consumers: clients,
          durationMsMax: options.durationMs,
          ack: 'each',
        });
        perRun.push({
          rate: consume.messagesPerSecond,
          bytes: consume.bytesPerSecond,
          acked: consume.received,
          filled: fill.acked,
        });
      }
      return perRun;
    });
    if (runs === undefined) continue;
    const measurement: ThroughputMeasurement = {
      system,
      durability,
      scenario: 'queue',
      messageBytes: queueMessageBytes,
      clients,
      partitions,
      messagesPerSecond: median(runs.map((run) => run.rate)),
      megabytesPerSecond: median(runs.map((run) => run.bytes)) / 1e6,
      messages: runs.map((run) => run.acked),
      perRun: runs.map((run) => run.rate),
    };
    const short = runs.filter((run) => run.acked < run.filled);
    if (short.length > 0) {
      measurement.note = `acked ${short.map((run) => `${run.acked} of ${run.filled}`).join(', ')} within the ${options.durationMs} ms cap`;
    }
    results.throughput.push(measurement);
    progress(
      `${system} ${durability} ${what}`,
      `${formatRate(measurement.messagesPerSecond)} msg/s acked one by one (runs ${runs.map((run) => formatRate(run.rate)).join(' / ')})`,
    );
  }

  const latencyRun = async (
    scenario: 'latency' | 'sweep',
    messageBytes: number,
    ratePerSecond: number,
    durationMs: number,
  ): Promise<LatencyMeasurement | undefined> => {
    const what = `${scenario} ${formatSize(messageBytes)} ${formatRate(ratePerSecond)} msg/s`;
    // A latency cell honours --runs (medians of the percentiles); a sweep step runs once.
    const runs = scenario === 'latency' ? options.runs : 1;
    const perRun = await cell(what, runs * (durationMs + latencyDrainMs), async () => {
      const all: LatencyResult[] = [];
      for (let run = 0; run < runs; run += 1) {
        all.push(await peer.endToEndLatency({ ratePerSecond, durationMs, messageBytes }));
      }
      return all;
    });
    if (perRun === undefined) return undefined;
    const latency = combineLatencyRuns(perRun);
    // HDR percentiles are the top of the value's bucket (3 significant digits): never above the exact max.
    const measurement: LatencyMeasurement = {
      system,
      durability,
      scenario,
      messageBytes,
      ratePerSecond,
      ...latency,
      p50Us: Math.min(latency.p50Us, latency.maxUs),
      p99Us: Math.min(latency.p99Us, latency.maxUs),
      p999Us: Math.min(latency.p999Us, latency.maxUs),
    };
    if (perRun.length > 1) measurement.perRunP99Us = perRun.map((run) => Math.min(run.p99Us, run.maxUs));
    const saturated = saturation(measurement);
    if (scenario === 'sweep' && saturated !== undefined) measurement.saturated = saturated;
    results.latency.push(measurement);
    progress(
      `${system} ${durability} ${what}`,
      `p50 ${formatMicroseconds(latency.p50Us)}, p99 ${formatMicroseconds(latency.p99Us)}, ` +
        `p99.9 ${formatMicroseconds(latency.p999Us)}${latency.lost > 0 ? `, ${latency.lost} lost` : ''}` +
        (measurement.saturated !== undefined ? ` (saturated: ${measurement.saturated})` : ''),
    );
    return measurement;
  };

  for (const messageBytes of plan.latencySizes) {
    if (abandoned) break;
    await latencyRun('latency', messageBytes, options.latencyRatePerSecond, options.durationMs);
  }
  let saturatedSteps = 0;
  for (const [index, rate] of plan.sweepRates.entries()) {
    if (abandoned) break;
    const measurement = await latencyRun('sweep', plan.sweepBytes, rate, options.sweepStepDurationMs);
    if (measurement?.saturated !== undefined) {
      saturatedSteps = plan.sweepRates.length - index - 1; // higher rates only queue more
      remaining -= saturatedSteps;
      break;
    }
  }
  return { measured, failed, skippedSteps: remaining, saturatedSteps };
}

/** What a throughput warm-up did (stated in the rows of the cell it preceded). */
export interface ThroughputWarmUp {
  rounds: number;
  elapsedMs: number;
  /** MB/s produced by each round, in order: how far a cold system was from the measured runs. */
  produceMegabytesPerSecond: number[];
}

/**
 * Runs `round` (one unmeasured produce + consume of the cell's workload; resolves with the MB/s it
 * produced) until `warmUpMs` have passed: at least one round, at most `throughputWarmUpRoundsMax`.
 * A broker process started for the cells still compiles its hot paths for seconds: at 16 KiB a fresh
 * Spillway broker produced 740–1,050 MB/s in its first 256 MiB phase and 1,900–2,400 MB/s from the
 * fifth on, its CPU per phase falling from ~280 to ~100 ms (issue 15, session 10), so cold cells
 * measured the JIT, not the steady state a running broker serves. Every system gets the same
 * warm-up, as in the latency cells (`latencyWarmUpMs`) and the page-cache reference.
 */
export async function throughputWarmUp(
  warmUpMs: number,
  round: () => Promise<number>,
): Promise<ThroughputWarmUp> {
  const startMs = performance.now();
  const produced: number[] = [];
  do {
    produced.push(await round());
  } while (performance.now() - startMs < warmUpMs && produced.length < throughputWarmUpRoundsMax);
  return {
    rounds: produced.length,
    elapsedMs: performance.now() - startMs,
    produceMegabytesPerSecond: produced,
  };
}

/** Bound of the warm-up rounds (a system answering empty rounds at once cannot spin for the whole time). */
export const throughputWarmUpRoundsMax = 100;

function warmUpNote(warmUp: ThroughputWarmUp, messageBytes: number): string {
  const rates = warmUp.produceMegabytesPerSecond.map((rate) => rate.toFixed(0)).join(' / ');
  return (
    `after ${(warmUp.elapsedMs / 1000).toFixed(1)} s of warm-up (${warmUp.rounds} unmeasured rounds of ` +
    `${formatSize(messageBytes)}, 1p 1part: ${rates} MB/s)`
  );
}

/**
 * One figure of several latency runs of a cell: the median of each percentile, the largest max and
 * producer lag, the sums of measured and lost messages and of warm-up round trips.
 */
export function combineLatencyRuns(runs: readonly LatencyResult[]): LatencyResult {
  return {
    p50Us: median(runs.map((run) => Math.min(run.p50Us, run.maxUs))),
    p99Us: median(runs.map((run) => Math.min(run.p99Us, run.maxUs))),
    p999Us: median(runs.map((run) => Math.min(run.p999Us, run.maxUs))),
    maxUs: Math.max(...runs.map((run) => run.maxUs)),
    measured: runs.reduce((sum, run) => sum + run.measured, 0),
    lost: runs.reduce((sum, run) => sum + run.lost, 0),
    producerLagMaxMs: Math.max(...runs.map((run) => run.producerLagMaxMs)),
    warmUpRoundTrips: runs.reduce((sum, run) => sum + run.warmUpRoundTrips, 0),
  };
}

/** Why a latency run's rate is past what the system sustains, or undefined. */
export function saturation(
  latency: Pick<LatencyMeasurement, 'lost' | 'p50Us' | 'producerLagMaxMs'>,
): string | undefined {
  if (latency.lost > 0) return `${latency.lost} messages not received within ${latencyDrainMs} ms`;
  if (latency.p50Us > sweepSaturatedP50Us)
    return `p50 above ${sweepSaturatedP50Us / 1000} ms: messages queue up`;
  if (latency.producerLagMaxMs > sweepSaturatedLagMs) {
    return `the publisher fell ${Math.round(latency.producerLagMaxMs)} ms behind schedule`;
  }
  return undefined;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** 75 → '1m15s', 42 → '42s' (an estimate: whole seconds). */
function formatSeconds(seconds: number): string {
  const whole = Math.max(0, Math.round(seconds));
  return whole >= 60 ? `${Math.floor(whole / 60)}m${String(whole % 60).padStart(2, '0')}s` : `${whole}s`;
}

/** 123,456 */
export function formatRate(value: number): string {
  return Math.round(value).toLocaleString('en-US');
}

/** 850 µs · 1.25 ms · 2.10 s */
export function formatMicroseconds(us: number): string {
  if (us < 1000) return `${Math.round(us)} µs`;
  if (us < 1_000_000) return `${(us / 1000).toPrecision(3)} ms`;
  return `${(us / 1_000_000).toPrecision(3)} s`;
}
