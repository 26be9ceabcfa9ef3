import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { checkWellFormedSvg } from '../../bench/charts.js';
import {
  CompareUsageError,
  compareDefaults,
  formatSize,
  parseSize,
  resolveCompareOptions,
} from '../../bench/compare/options.js';
import { compareCharts, compareMarkdown, compareRows, formatRatio } from '../../bench/compare/report.js';
import {
  type CompareResults,
  computeRatios,
  type LatencyMeasurement,
  type ReferenceFigures,
  referenceFor,
  type ThroughputMeasurement,
} from '../../bench/compare/results.js';
import {
  combineLatencyRuns,
  saturation,
  sweepMessageBytes,
  throughputWarmUp,
  throughputWarmUpRoundsMax,
} from '../../bench/compare/runner.js';
import { compareTarget } from '../../bench/compare/targets.js';
import { type BenchResults, BenchUsageError, runBench } from '../../bench/main.js';
import { findExecutable } from '../../bench/peers/install.js';
import { consumeAssignment, SpillwayPeer, spillwayCliPath } from '../../bench/peers/spillway.js';

const temporaryDirectories: string[] = [];
function temporaryDirectory(): string {
  const directory = mkdtempSync(path.join(tmpdir(), 'spillway-compare-test-'));
  temporaryDirectories.push(directory);
  return directory;
}
afterEach(() => {
  for (const directory of temporaryDirectories.splice(0)) rmSync(directory, { recursive: true, force: true });
});

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

const reference: ReferenceFigures = {
  pageCacheWriteMegabytesPerSecond: 4000,
  syncedWriteMegabytesPerSecond: 1000,
  syncedEachMegabytesPerSecond: 500,
  memcpyGigabytesPerSecond: 10,
  fdatasyncP50Us: 150,
  fdatasyncP99Us: 400,
};

function throughput(
  system: ThroughputMeasurement['system'],
  durability: ThroughputMeasurement['durability'],
  messagesPerSecond: number,
  overrides: Partial<ThroughputMeasurement> = {},
): ThroughputMeasurement {
  return {
    scenario: 'produce',
    system,
    durability,
    messageBytes: 1000,
    clients: 1,
    partitions: 1,
    messagesPerSecond,
    megabytesPerSecond: (messagesPerSecond * 1000) / 1e6,
    messages: [messagesPerSecond],
    perRun: [messagesPerSecond],
    ...overrides,
  };
}

function latency(
  system: LatencyMeasurement['system'],
  p99Us: number,
  overrides: Partial<LatencyMeasurement> = {},
): LatencyMeasurement {
  return {
    scenario: 'latency',
    system,
    durability: 'always',
    messageBytes: 1024,
    ratePerSecond: 1000,
    p50Us: p99Us / 4,
    p99Us,
    p999Us: p99Us * 2,
    maxUs: p99Us * 3,
    measured: 900,
    lost: 0,
    producerLagMaxMs: 1,
    ...overrides,
  };
}

function syntheticResults(): CompareResults {
  const options = {
    ...compareDefaults(true),
    systems: ['spillway', 'nats', 'redis', 'rabbitmq'] as CompareResults['options']['systems'],
    sizes: [1000],
  };
  const results: CompareResults = {
    options,
    reference,
    targets: [
      {
        system: 'spillway',
        durability: 'none',
        setting: 'durability none',
        guarantee: 'g1',
        status: 'measured',
        version: 'spillway 0.1.0',
      },
      {
        system: 'spillway',
        durability: 'always',
        setting: 'durability always',
        guarantee: 'g2',
        status: 'measured',
      },
      {
        system: 'nats',
        durability: 'always',
        setting: 'sync always',
        guarantee: 'g3',
        status: 'unavailable',
        reason: 'too old',
      },
      {
        system: 'redis',
        durability: 'none',
        setting: 'appendfsync no',
        guarantee: 'acks before any fsync',
        status: 'measured',
      },
      {
        system: 'redis',
        durability: 'always',
        setting: 'appendfsync always',
        guarantee: 'g5',
        status: 'measured',
      },
      {
        system: 'rabbitmq',
        durability: 'none',
        setting: 'quorum',
        guarantee: 'g6',
        status: 'n/a',
        reason: 'no such setting',
      },
      { system: 'rabbitmq', durability: 'always', setting: 'quorum', guarantee: 'g7', status: 'measured' },
    ],
    throughput: [
      throughput('spillway', 'none', 200_000),
      throughput('redis', 'none', 100_000),
      throughput('spillway', 'always', 30_000),
      throughput('redis', 'always', 10_000),
      throughput('rabbitmq', 'always', 20_000),
      throughput('spillway', 'always', 50_000, { partitions: 8 }),
      throughput('spillway', 'none', 400_000, { scenario: 'consume' }),
      throughput('redis', 'none', 200_000, { scenario: 'consume' }),
      throughput('spillway', 'always', 600_000, { scenario: 'queue', messageBytes: 100 }),
      throughput('redis', 'always', 70_000, { scenario: 'queue', messageBytes: 100 }),
      throughput('rabbitmq', 'always', 150_000, { scenario: 'queue', messageBytes: 100 }),
    ],
    latency: [
      latency('spillway', 3000),
      latency('redis', 2000),
      latency('rabbitmq', 6000),
      latency('spillway', 9000, { scenario: 'sweep', ratePerSecond: 1000 }),
      latency('redis', 90_000_000, { scenario: 'sweep', ratePerSecond: 1000, lost: 5, saturated: 'lost' }),
    ],
    failures: [{ system: 'redis', durability: 'always', what: '1KiB 4p 1part', error: 'boom | pipe' }],
    steps: 12,
    durationSeconds: 3,
  };
  computeRatios(results);
  return results;
}

describe('comparison options', () => {
  it('parses the flags, in canonical order, deduplicated', () => {
    const options = resolveCompareOptions(
      {
        systems: 'redis,spillway,redis',
        durability: 'always,none',
        sizes: '16KiB,100,1k',
        producers: '4,1',
        partitions: '8',
        scenarios: 'latency,produce',
        durationMs: '800',
        runs: '3',
        sweepRates: '5000,1000',
      },
      false,
    );
    expect(options.systems).toEqual(['spillway', 'redis']);
    expect(options.durabilities).toEqual(['none', 'always']);
    expect(options.sizes).toEqual([100, 1024, 16_384]);
    expect(options.clients).toEqual([1, 4]);
    expect(options.partitions).toEqual([8]);
    expect(options.scenarios).toEqual(['produce', 'latency']);
    expect(options.durationMs).toBe(800);
    expect(options.sweepStepDurationMs).toBe(600);
    expect(options.runs).toBe(3);
    expect(options.sweepRatesPerSecond).toEqual([1000, 5000]);
  });

  it('refuses unknown names, bad numbers and empty lists (negative space)', () => {
    expect(() => resolveCompareOptions({ systems: 'kafka' }, false)).toThrow(CompareUsageError);
    expect(() => resolveCompareOptions({ systems: 'kafka' }, false)).toThrow(/unknown kafka/);
    expect(() => resolveCompareOptions({ durability: 'sometimes' }, false)).toThrow(CompareUsageError);
    expect(() => resolveCompareOptions({ sizes: '1GiB' }, false)).toThrow(CompareUsageError);
    expect(() => resolveCompareOptions({ sizes: '2' }, false)).toThrow(/whole number in \[4,/);
    expect(() => resolveCompareOptions({ producers: '0' }, false)).toThrow(CompareUsageError);
    expect(() => resolveCompareOptions({ partitions: '1.5' }, false)).toThrow(CompareUsageError);
    expect(() => resolveCompareOptions({ durationMs: '-1' }, false)).toThrow(CompareUsageError);
    expect(() => resolveCompareOptions({ scenarios: ',' }, false)).toThrow(/empty list/);
  });

  it('sizes read and print in bytes, KiB and MiB', () => {
    expect(parseSize('100')).toBe(100);
    expect(parseSize('100B')).toBe(100);
    expect(parseSize('1KiB')).toBe(1024);
    expect(parseSize('16k')).toBe(16_384);
    expect(parseSize('1MiB')).toBe(1_048_576);
    expect(parseSize('lots')).toBeNaN();
    expect([100, 1024, 16_384, 1536, 1_048_576].map(formatSize)).toEqual([
      '100B',
      '1KiB',
      '16KiB',
      '1536B',
      '1MiB',
    ]);
  });

  it('the default matrix covers every dimension of the issue; quick is one cell per system', () => {
    const full = compareDefaults(false);
    expect(full.sizes).toEqual([100, 1024, 16_384]);
    expect(full.clients).toEqual([1, 4]);
    expect(full.partitions).toEqual([1, 8]);
    expect(full.durabilities).toEqual(['none', 'interval', 'always']);
    const quick = compareDefaults(true);
    expect(quick.sizes).toEqual([1024]);
    expect(quick.durationMs).toBeLessThan(full.durationMs);
    expect(sweepMessageBytes([100, 1024, 16_384])).toBe(1024);
    expect(sweepMessageBytes([100, 16_384])).toBe(100);
    // The throughput cells are measured warm by default; quick runs are a smoke check, cold.
    expect(full.throughputWarmUpMs).toBe(2000);
    expect(quick.throughputWarmUpMs).toBe(0);
  });

  it('--warm-up-ms sets the throughput warm-up, 0 turns it off, out of range is a usage error', () => {
    expect(resolveCompareOptions({ warmUpMs: '1500' }, false).throughputWarmUpMs).toBe(1500);
    expect(resolveCompareOptions({ warmUpMs: '0' }, false).throughputWarmUpMs).toBe(0);
    expect(resolveCompareOptions({ warmUpMs: '300' }, true).throughputWarmUpMs).toBe(300);
    expect(() => resolveCompareOptions({ warmUpMs: '-1' }, false)).toThrow(/--warm-up-ms.*\[0, 60000\]/);
    expect(() => resolveCompareOptions({ warmUpMs: '60001' }, false)).toThrow(CompareUsageError);
    expect(() => resolveCompareOptions({ warmUpMs: 'long' }, false)).toThrow(CompareUsageError);
  });

  it('a bad flag is a usage error of runBench, before anything is written', async () => {
    const out = path.join(temporaryDirectory(), 'results');
    const run = runBench({
      quick: true,
      suites: ['compare'],
      compare: { sizes: 'huge' },
      out,
      write: () => {},
      log: () => {},
    });
    await expect(run).rejects.toBeInstanceOf(BenchUsageError);
    expect(existsSync(out)).toBe(false);
  });
});

describe('targets', () => {
  it('maps each mode to the setting that keeps its promise, or n/a with a reason', () => {
    expect(compareTarget('redis', 'none').setting).toBe('AOF, appendfsync no');
    expect(compareTarget('redis', 'none').guarantee).toMatch(/before any fsync/);
    expect(compareTarget('redis', 'interval').setting).toBe('AOF, appendfsync everysec');
    expect(compareTarget('redis', 'always').setting).toBe('AOF, appendfsync always');
    expect(compareTarget('nats', 'none').setting).toMatch(/default sync/);
    expect(compareTarget('nats', 'always').create).toBeDefined(); // reported unavailable by start() where too old
    expect(compareTarget('nats', 'interval').create).toBeUndefined();
    expect(compareTarget('rabbitmq', 'none').notApplicable).toMatch(/quorum queues always fsync/);
    expect(compareTarget('rabbitmq', 'always').create).toBeDefined();
    const spillway = compareTarget('spillway', 'interval');
    expect(spillway.partitioned).toBe(true);
    expect(spillway.guarantee).toMatch(/200 ms/);
    for (const system of ['nats', 'redis', 'rabbitmq'] as const) {
      expect(compareTarget(system, 'always').partitioned).toBe(false);
    }
  });
});

describe('ratios', () => {
  it('divide MB/s by the reference of the mode and msg/s by the best peer in the same cell', () => {
    const results = syntheticResults();
    const find = (system: string, durability: string, partitions = 1, scenario = 'produce') =>
      results.throughput.find(
        (entry) =>
          entry.system === system &&
          entry.durability === durability &&
          entry.partitions === partitions &&
          entry.scenario === scenario,
      )!;
    // none: 200 MB/s ÷ 4000 MB/s page cache; always: 30 MB/s ÷ 500 MB/s of 1 MiB writes + fdatasync each.
    expect(find('spillway', 'none').ratioToReference).toBeCloseTo(0.05);
    expect(find('spillway', 'none').referenceName).toBe('page-cache write 1MiB chunks');
    expect(find('spillway', 'always').ratioToReference).toBeCloseTo(0.06);
    expect(find('spillway', 'always').referenceName).toBe('write 1MiB + fdatasync each');
    // consume: 400 MB/s ÷ 10 GB/s memcpy.
    expect(find('spillway', 'none', 1, 'consume').ratioToReference).toBeCloseTo(0.04);
    // Best peer at equal durability: redis for none (100k), rabbitmq for always (20k).
    expect(find('spillway', 'none').ratioToBestPeer).toBeCloseTo(2);
    expect(find('spillway', 'always').ratioToBestPeer).toBeCloseTo(1.5);
    expect(find('spillway', 'always').bestPeer).toBe('rabbitmq');
    expect(find('redis', 'always').ratioToBestPeer).toBeCloseTo(0.5);
    expect(find('rabbitmq', 'always').ratioToBestPeer).toBeCloseTo(1);
    // Queue mode (per-message ack): ratio to the best peer (rabbitmq 150k), no reference ratio.
    expect(find('spillway', 'always', 1, 'queue').ratioToBestPeer).toBeCloseTo(4);
    expect(find('spillway', 'always', 1, 'queue').bestPeer).toBe('rabbitmq');
    expect(find('spillway', 'always', 1, 'queue').ratioToReference).toBeUndefined();
    // No peer has 8 partitions: no peer ratio rather than a wrong one.
    expect(find('spillway', 'always', 8).ratioToBestPeer).toBeUndefined();
    // Latency: p99 ÷ the lowest peer p99; saturated steps neither get nor serve as a best.
    const spillwayLatency = results.latency.find(
      (entry) => entry.system === 'spillway' && entry.scenario === 'latency',
    )!;
    expect(spillwayLatency.p99RatioToBestPeer).toBeCloseTo(1.5);
    expect(spillwayLatency.bestPeer).toBe('redis');
    const sweep = results.latency.find((entry) => entry.system === 'spillway' && entry.scenario === 'sweep')!;
    expect(sweep.p99RatioToBestPeer).toBeUndefined();
  });

  it('has no reference ratio when the reference was not measured', () => {
    const none: ReferenceFigures = {
      pageCacheWriteMegabytesPerSecond: undefined,
      syncedWriteMegabytesPerSecond: undefined,
      memcpyGigabytesPerSecond: undefined,
      fdatasyncP50Us: undefined,
      fdatasyncP99Us: undefined,
    };
    expect(referenceFor({ scenario: 'produce', durability: 'none' }, none)).toBeUndefined();
    expect(referenceFor({ scenario: 'produce', durability: 'interval' }, reference)?.megabytesPerSecond).toBe(
      1000,
    );
    expect(formatRatio(0.0421)).toBe('0.042×');
    expect(formatRatio(1.25)).toBe('1.3×');
    expect(formatRatio(12.4)).toBe('12×');
    expect(formatRatio(undefined)).toBe('–');
  });

  it('saturation: lost messages, a queueing p50 or a publisher behind schedule', () => {
    expect(saturation({ lost: 0, p50Us: 500, producerLagMaxMs: 2 })).toBeUndefined();
    expect(saturation({ lost: 3, p50Us: 500, producerLagMaxMs: 2 })).toMatch(/3 messages not received/);
    expect(saturation({ lost: 0, p50Us: 250_000, producerLagMaxMs: 2 })).toMatch(/p50 above/);
    expect(saturation({ lost: 0, p50Us: 500, producerLagMaxMs: 900 })).toMatch(/behind schedule/);
  });
});

describe('report on synthetic results', () => {
  it('Markdown: glance tables, full tables with ratios, latency, guarantees, failures', () => {
    const markdown = compareMarkdown(syntheticResults());
    expect(markdown).toContain('### Produce at a glance (msg/s)');
    expect(markdown).toContain('| none | 1000B | 1 | 1 | 200,000 | – | 100,000 | n/a | 2× |');
    expect(markdown).toContain('| always | 1000B | 1 | 1 | 30,000 | unavailable | 10,000 | 20,000 | 1.5× |');
    expect(markdown).toContain('| none | 1000B | 1 | 1 | spillway | 200,000 | 200 | 0.05× | 2× (redis) |');
    expect(markdown).toContain('### Settings and what they guarantee');
    expect(markdown).toContain(
      '| redis | none | appendfsync no | measured (version unknown) | acks before any fsync |',
    );
    expect(markdown).toContain('| rabbitmq | none | quorum | n/a: no such setting | g6 |');
    expect(markdown).toContain('Comparisons are like with like');
    expect(markdown).toContain('- redis always 1KiB 4p 1part: boom \\| pipe');
    // Every table row has as many cells as its header.
    for (const table of markdown.split('\n\n').filter((block) => block.startsWith('| '))) {
      const lines = table.split('\n');
      const cells = (line: string) => line.replaceAll('\\|', '').split('|').length;
      for (const line of lines) expect(cells(line), line).toBe(cells(lines[0]!));
    }
  });

  it('rows: unique names, finite values, one per figure and per system that did not run', () => {
    const rows = compareRows(syntheticResults());
    expect(new Set(rows.map((row) => row.name)).size).toBe(rows.length);
    for (const row of rows) {
      expect(row.suite).toBe('compare');
      expect(Number.isFinite(row.value)).toBe(true);
    }
    expect(rows.find((row) => row.name === 'nats always: unavailable')?.detail).toMatch(/too old/);
    expect(rows.find((row) => row.name === 'produce none 1000B 1p 1part spillway')?.detail).toMatch(
      /200 MB\/s; 0\.05× page-cache write 1MiB chunks; 2× best peer \(redis\)/,
    );
    expect(rows.filter((row) => row.unit === 'µs')).toHaveLength(15);
  });

  it('charts: throughput by mode and system, latency percentiles, sweep; all well-formed', () => {
    const charts = compareCharts(syntheticResults());
    const files = charts.map((chart) => chart.file);
    expect(files).toEqual([
      'produce-1000B-1p-1part.svg',
      'produce-1000B-1p-8part.svg',
      'consume-1000B-1p-1part.svg',
      'latency-1KiB.svg',
      'sweep-always-1KiB.svg',
    ]);
    for (const chart of charts) checkWellFormedSvg(chart.svg);
    const produce = charts[0]!.svg;
    // Groups = the options' durability modes; series = the systems; bars where measured.
    expect(produce).toContain('>none</tspan>');
    expect(produce).toContain('>always</tspan>');
    expect(produce.match(/<rect class="bar"/g)).toHaveLength(5);
    expect(produce).toMatch(/class="missing"[^>]*>unavailable</);
    const latencyChart = charts[3]!.svg;
    expect(latencyChart.match(/<rect class="bar"/g)).toHaveLength(9); // 3 systems x p50/p99/p99.9
    expect(latencyChart).toContain('(log scale)');
    expect(latencyChart).toContain('>p99.9</text>');
  });
});

describe('consumeAssignment', () => {
  it('deals whole partitions when there are enough, else splits each into offset ranges', () => {
    const partitions = [
      { partition: 0, start: 0, end: 10 },
      { partition: 1, start: 5, end: 9 },
    ];
    expect(consumeAssignment(partitions, 1)).toEqual([partitions]);
    expect(consumeAssignment(partitions, 2)).toEqual([[partitions[0]], [partitions[1]]]);
    const four = consumeAssignment([{ partition: 0, start: 100, end: 110 }], 4);
    expect(four).toEqual([
      [{ partition: 0, start: 100, end: 103 }],
      [{ partition: 0, start: 103, end: 106 }],
      [{ partition: 0, start: 106, end: 108 }],
      [{ partition: 0, start: 108, end: 110 }],
    ]);
    // Empty ranges are dropped; every offset is read exactly once.
    const sparse = consumeAssignment([{ partition: 3, start: 0, end: 2 }], 4);
    expect(sparse.flat()).toEqual([
      { partition: 3, start: 0, end: 1 },
      { partition: 3, start: 1, end: 2 },
    ]);
    expect(() => consumeAssignment(partitions, 0)).toThrow(RangeError);
  });
});

const cliMissing = !existsSync(spillwayCliPath());
const redisMissing = findExecutable('redis-server') === undefined;

describe.skipIf(cliMissing)('spillway peer (skipped when dist/ is not built: npm run build)', () => {
  it('starts a broker process, produces over partitions, consumes it all, measures latency, stops by PID', async () => {
    const peer = new SpillwayPeer('always');
    let pid: number | undefined;
    try {
      await peer.start(temporaryDirectory());
      pid = peer.pid;
      expect(pid).toBeDefined();
      expect(isAlive(pid!)).toBe(true);
      expect(peer.version).toMatch(/^spillway \d+\.\d+\.\d+/);
      const produced = await peer.produce({
        messages: 3000,
        messageBytes: 100,
        producers: 2,
        partitions: 4,
        durationMsMax: 10_000,
      });
      expect(produced.acked).toBe(3000);
      const consumed = await peer.consume({ messages: 3000, consumers: 3, durationMsMax: 10_000 });
      expect(consumed.received).toBe(3000);
      // Queue mode: a new shared group over the same topic, every message acked on its own.
      const queued = await peer.consume({ messages: 3000, consumers: 2, durationMsMax: 10_000, ack: 'each' });
      expect(queued.received).toBe(3000);
      expect(queued.messagesPerSecond).toBeGreaterThan(0);
      const measured = await peer.endToEndLatency({ ratePerSecond: 400, durationMs: 400, messageBytes: 100 });
      expect(measured.lost).toBe(0);
      expect(measured.p50Us).toBeGreaterThan(0);
    } finally {
      await peer.stop();
    }
    expect(isAlive(pid!)).toBe(false);
    await peer.stop(); // a second stop is harmless
  });
});

describe.skipIf(cliMissing)(
  `a short comparison through runBench (spillway${redisMissing ? '; redis skipped: redis-server not installed' : ' and redis'})`,
  () => {
    it('writes well-formed results.json, compare.json, compare.md and SVG charts', async () => {
      const out = path.join(temporaryDirectory(), 'results');
      const logLines: string[] = [];
      const systems = redisMissing ? 'spillway' : 'spillway,redis';
      const result = await runBench({
        quick: true,
        suites: ['compare'],
        compare: {
          systems,
          durability: 'none,always',
          sizes: '1KiB',
          producers: '1',
          partitions: '1',
          durationMs: '300',
          sweepRates: '1000',
          warmUpMs: '200',
        },
        out,
        scratch: temporaryDirectory(),
        commandLine: ['test'],
        write: () => {},
        log: (line) => logLines.push(line),
      });
      expect(result.exitCode).toBe(0);
      const results = JSON.parse(readFileSync(path.join(out, 'results.json'), 'utf8')) as BenchResults;
      expect(results.metadata.suitesRequested).toEqual(['reference', 'compare']);
      expect(results.rows.some((row) => row.suite === 'reference')).toBe(true);
      const compareRowsWritten = results.rows.filter((row) => row.suite === 'compare');
      const systemCount = redisMissing ? 1 : 2;
      // produce + consume + queue per system and mode; 3 latency rows for each of latency and sweep.
      expect(compareRowsWritten.filter((row) => row.unit === 'msg/s')).toHaveLength(systemCount * 2 * 3);
      expect(compareRowsWritten.filter((row) => row.unit === 'µs')).toHaveLength(systemCount * 2 * 6);
      for (const row of compareRowsWritten) expect(row.value, row.name).toBeGreaterThan(0);

      const compare = JSON.parse(readFileSync(path.join(out, 'compare.json'), 'utf8')) as CompareResults;
      expect(compare.reference.pageCacheWriteMegabytesPerSecond).toBeGreaterThan(0);
      expect(compare.targets.map((target) => target.status)).toEqual(Array(systemCount * 2).fill('measured'));
      expect(compare.failures).toEqual([]);
      for (const entry of compare.throughput) {
        if (entry.scenario === 'queue') expect(entry.ratioToReference).toBeUndefined();
        else expect(entry.ratioToReference).toBeGreaterThan(0);
      }
      const queue = compare.throughput.filter((entry) => entry.scenario === 'queue');
      expect(queue).toHaveLength(systemCount * 2);
      for (const entry of queue) {
        expect(entry.messageBytes).toBe(100);
        expect(entry.messages[0], entry.system).toBeGreaterThan(0);
      }
      if (!redisMissing) {
        for (const entry of compare.throughput) expect(entry.ratioToBestPeer).toBeGreaterThan(0);
      }
      // --warm-up-ms: the produce/consume cell of each system and mode ran after unmeasured rounds.
      const produced = compare.throughput.filter((entry) => entry.scenario === 'produce');
      expect(produced).toHaveLength(systemCount * 2);
      for (const entry of produced) {
        expect(entry.note, entry.system).toMatch(
          /after [\d.]+ s of warm-up \(\d+ unmeasured rounds of 1KiB, 1p 1part: /,
        );
      }
      expect(compare.options.throughputWarmUpMs).toBe(200);

      const markdown = readFileSync(path.join(out, 'compare.md'), 'utf8');
      expect(markdown).toContain('### Settings and what they guarantee');
      expect(markdown).toContain('### Physical reference (this machine, this run)');
      expect(markdown).toContain('### Queue mode with per-message ack (msg/s acked)');
      const charts = readdirSync(path.join(out, 'charts')).sort();
      expect(charts).toEqual([
        'consume-1KiB-1p-1part.svg',
        'latency-1KiB.svg',
        'produce-1KiB-1p-1part.svg',
        'sweep-always-1KiB.svg',
        'sweep-none-1KiB.svg',
      ]);
      for (const chart of charts) {
        expect(markdown).toContain(`(charts/${chart})`);
        const svg = readFileSync(path.join(out, 'charts', chart), 'utf8');
        checkWellFormedSvg(svg);
        expect(svg).toContain('>spillway');
      }
      // Progress: numbered steps on the log.
      expect(
        logLines.some((line) =>
          /compare: \[1\/\d+\] spillway none 1KiB 1p 1part: produce [\d,]+ msg\/s/.test(line),
        ),
      ).toBe(true);
    }, 60_000);
  },
);

describe('throughputWarmUp', () => {
  it('runs one round at least, then rounds until the time has passed, and reports each round', async () => {
    const once = await throughputWarmUp(0, async () => 7);
    expect(once.rounds).toBe(1);
    expect(once.produceMegabytesPerSecond).toEqual([7]);
    let calls = 0;
    const timed = await throughputWarmUp(30, async () => {
      calls += 1;
      await new Promise((resolve) => setTimeout(resolve, 5));
      return calls;
    });
    expect(timed.elapsedMs).toBeGreaterThanOrEqual(30);
    expect(timed.rounds).toBe(calls);
    expect(timed.produceMegabytesPerSecond).toEqual(Array.from({ length: calls }, (_, index) => index + 1));
  });

  it('stops after throughputWarmUpRoundsMax rounds however long the warm-up (rounds that end at once)', async () => {
    let calls = 0;
    const bounded = await throughputWarmUp(60_000, async () => {
      calls += 1;
      return 0;
    });
    expect(bounded.rounds).toBe(throughputWarmUpRoundsMax);
    expect(calls).toBe(throughputWarmUpRoundsMax);
  });
});

describe('combineLatencyRuns', () => {
  it('takes the median of each percentile over the runs, the largest max and lag, and sums the counts', () => {
    const run = (p99Us: number, maxUs: number) => ({
      p50Us: p99Us / 10,
      p99Us,
      p999Us: p99Us * 2,
      maxUs,
      measured: 1900,
      lost: 1,
      producerLagMaxMs: p99Us / 1000,
      warmUpRoundTrips: 1000,
    });
    const combined = combineLatencyRuns([run(3000, 9000), run(1000, 2500), run(2000, 3000)]);
    expect(combined).toEqual({
      p50Us: 200,
      p99Us: 2000,
      // Percentiles never above a run's exact max: 2,500 and 3,000 cap 2,000 and 4,000.
      p999Us: 3000,
      maxUs: 9000,
      measured: 5700,
      lost: 3,
      producerLagMaxMs: 3,
      warmUpRoundTrips: 3000,
    });
  });
});
