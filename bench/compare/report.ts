/**
 * What a comparison writes: BenchRows for the runner's table, compare.md (tables with the ratios, the
 * settings and what each guarantees), compare.json (the full CompareResults) and SVG charts
 * (throughput by durability mode and system; latency percentiles by system; the latency sweep).
 */
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import type { Durability } from '../../src/protocol/types.js';
import {
  checkWellFormedSvg,
  defaultPalette,
  formatCompact,
  formatMicroseconds,
  type GroupedBarChart,
  groupedBarChartSvg,
} from '../charts.js';
import type { BenchRow } from '../report.js';
import { spillwayProducerSettings } from '../spillway-producer.js';
import { formatSize, type SystemName, systemNames } from './options.js';
import type {
  CompareResults,
  LatencyMeasurement,
  ReferenceFigures,
  TargetReport,
  ThroughputMeasurement,
} from './results.js';
import { sweepMessageBytes } from './runner.js';

export const compareSuiteName = 'compare';

/** A colour per system, the same in every chart. */
export const systemColors: Readonly<Record<SystemName, string>> = {
  spillway: defaultPalette[0]!,
  nats: defaultPalette[1]!,
  redis: defaultPalette[2]!,
  rabbitmq: defaultPalette[3]!,
};

const percentileColors = ['#93c5fd', '#3b82f6', '#1e3a8a'] as const;

/** What each mode promises, in a few words (chart group labels). */
const modeSummary: Readonly<Record<Durability, string>> = {
  none: 'acked before any fsync',
  interval: 'fsync every 0.2–1 s',
  always: 'fsync before the ack',
};

const durabilityOrder: readonly Durability[] = ['none', 'interval', 'always'];

function systemIndex(system: SystemName): number {
  return systemNames.indexOf(system);
}

function sortThroughput(measurements: readonly ThroughputMeasurement[]): ThroughputMeasurement[] {
  return [...measurements].sort(
    (a, b) =>
      durabilityOrder.indexOf(a.durability) - durabilityOrder.indexOf(b.durability) ||
      a.messageBytes - b.messageBytes ||
      a.clients - b.clients ||
      a.partitions - b.partitions ||
      systemIndex(a.system) - systemIndex(b.system),
  );
}

function sortLatency(measurements: readonly LatencyMeasurement[]): LatencyMeasurement[] {
  return [...measurements].sort(
    (a, b) =>
      durabilityOrder.indexOf(a.durability) - durabilityOrder.indexOf(b.durability) ||
      a.messageBytes - b.messageBytes ||
      systemIndex(a.system) - systemIndex(b.system) ||
      a.ratePerSecond - b.ratePerSecond,
  );
}

/** 0.0421 · 0.56 · 1.3 · 12 (two significant digits; ratios are not more precise than that here). */
export function formatRatio(ratio: number | undefined): string {
  if (ratio === undefined || !Number.isFinite(ratio)) return '–';
  if (ratio >= 10) return `${Math.round(ratio)}×`;
  return `${Number(ratio.toPrecision(2))}×`;
}

function formatRate(value: number): string {
  return Math.round(value).toLocaleString('en-US');
}

function formatMegabytes(value: number): string {
  return value >= 100 ? Math.round(value).toLocaleString('en-US') : value.toPrecision(3);
}

function cell(text: string): string {
  return text.replaceAll('|', '\\|').replaceAll('\n', ' ');
}

function row(cells: readonly string[]): string {
  return `| ${cells.map(cell).join(' | ')} |`;
}

function targetOf(
  results: CompareResults,
  system: SystemName,
  durability: Durability,
): TargetReport | undefined {
  return results.targets.find((target) => target.system === system && target.durability === durability);
}

function settingOf(results: CompareResults, system: SystemName, durability: Durability): string {
  return targetOf(results, system, durability)?.setting ?? '';
}

// ---------------------------------------------------------------------------------------------- rows

/** The suite's rows: one per figure, plus one per system and mode that did not run (with the reason). */
export function compareRows(results: CompareResults): BenchRow[] {
  const rows: BenchRow[] = [];
  for (const target of results.targets) {
    if (target.status === 'measured') continue;
    rows.push({
      suite: compareSuiteName,
      name: `${target.system} ${target.durability}: ${target.status}`,
      value: 0,
      unit: 'n/a',
      detail: `${target.setting}: ${target.reason ?? ''}`,
    });
  }
  for (const measurement of sortThroughput(results.throughput)) {
    const ratios = [
      `${formatMegabytes(measurement.megabytesPerSecond)} MB/s`,
      measurement.ratioToReference === undefined
        ? undefined
        : `${formatRatio(measurement.ratioToReference)} ${measurement.referenceName}`,
      measurement.ratioToBestPeer === undefined
        ? undefined
        : `${formatRatio(measurement.ratioToBestPeer)} best peer (${measurement.bestPeer})`,
      settingOf(results, measurement.system, measurement.durability),
      `${measurement.messages.join('/')} messages`,
      measurement.note,
    ].filter((part) => part !== undefined);
    rows.push({
      suite: compareSuiteName,
      name: `${measurement.scenario} ${measurement.durability} ${formatSize(measurement.messageBytes)} ${measurement.clients}p ${measurement.partitions}part ${measurement.system}`,
      value: measurement.messagesPerSecond,
      unit: 'msg/s',
      detail: ratios.join('; '),
    });
  }
  for (const measurement of sortLatency(results.latency)) {
    const base = `${measurement.scenario} ${measurement.durability} ${formatSize(measurement.messageBytes)} ${measurement.ratePerSecond}/s ${measurement.system}`;
    const detail = [
      `${measurement.measured} measured, ${measurement.lost} lost, max ${formatMicroseconds(measurement.maxUs)}`,
      measurement.perRunP99Us === undefined
        ? undefined
        : `median of ${measurement.perRunP99Us.length} runs, p99 per run ${measurement.perRunP99Us.map(formatMicroseconds).join(' / ')}`,
      measurement.p99RatioToBestPeer === undefined
        ? undefined
        : `p99 ${formatRatio(measurement.p99RatioToBestPeer)} best peer (${measurement.bestPeer})`,
      measurement.saturated === undefined ? undefined : `saturated: ${measurement.saturated}`,
      settingOf(results, measurement.system, measurement.durability),
    ].filter((part) => part !== undefined);
    rows.push(
      {
        suite: compareSuiteName,
        name: `${base} p50`,
        value: measurement.p50Us,
        unit: 'µs',
        detail: detail.join('; '),
      },
      { suite: compareSuiteName, name: `${base} p99`, value: measurement.p99Us, unit: 'µs' },
      { suite: compareSuiteName, name: `${base} p99.9`, value: measurement.p999Us, unit: 'µs' },
    );
  }
  results.failures.forEach((failure, index) => {
    rows.push({
      suite: compareSuiteName,
      name: `${failure.system} ${failure.durability} ${failure.what}: failed #${index + 1}`,
      value: 0,
      unit: 'n/a',
      detail: failure.error,
    });
  });
  return rows;
}

// ------------------------------------------------------------------------------------------ markdown

function referenceLines(reference: ReferenceFigures): string[] {
  const figure = (value: number | undefined, unit: string): string =>
    value === undefined ? 'not measured' : `${formatMegabytes(value)} ${unit}`;
  return [
    `- page-cache write (1 MiB chunks): ${figure(reference.pageCacheWriteMegabytesPerSecond, 'MB/s')}: the ceiling of \`none\` produce`,
    `- page-cache write + fdatasync: ${figure(reference.syncedWriteMegabytesPerSecond, 'MB/s')}: the ceiling of \`interval\` produce (every byte reaches the disk)`,
    `- write 1 MiB + fdatasync each: ${figure(reference.syncedEachMegabytesPerSecond, 'MB/s')}: the ceiling of \`always\` produce (each acknowledgement after its own fdatasync; a group-committed log can approach it)`,
    `- memcpy: ${figure(reference.memcpyGigabytesPerSecond, 'GB/s')}: the ceiling of consume (reads from the page cache)`,
    `- fdatasync of a 4 KiB append: p50 ${reference.fdatasyncP50Us === undefined ? '–' : formatMicroseconds(reference.fdatasyncP50Us)}, p99 ${reference.fdatasyncP99Us === undefined ? '–' : formatMicroseconds(reference.fdatasyncP99Us)}: the floor of an \`always\` acknowledgement`,
  ];
}

function throughputTable(results: CompareResults, scenario: ThroughputMeasurement['scenario']): string[] {
  const measurements = sortThroughput(results.throughput.filter((entry) => entry.scenario === scenario));
  if (measurements.length === 0) return ['(not run)'];
  const clientsName = scenario === 'produce' ? 'producers' : 'consumers';
  const lines = [
    row([
      'mode',
      'size',
      clientsName,
      'partitions',
      'system',
      'msg/s',
      'MB/s',
      '÷ reference',
      '÷ best peer',
      'note',
    ]),
    '| --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | --- |',
  ];
  for (const entry of measurements) {
    lines.push(
      row([
        entry.durability,
        formatSize(entry.messageBytes),
        String(entry.clients),
        String(entry.partitions),
        entry.system,
        formatRate(entry.messagesPerSecond),
        formatMegabytes(entry.megabytesPerSecond),
        formatRatio(entry.ratioToReference),
        entry.ratioToBestPeer === undefined
          ? '–'
          : `${formatRatio(entry.ratioToBestPeer)} (${entry.bestPeer})`,
        [entry.perRun.length > 1 ? `median of ${entry.perRun.length}` : '', entry.note ?? '']
          .filter(Boolean)
          .join('; '),
      ]),
    );
  }
  return lines;
}

function latencyTable(results: CompareResults, scenario: 'latency' | 'sweep'): string[] {
  const measurements = sortLatency(results.latency.filter((entry) => entry.scenario === scenario));
  if (measurements.length === 0) return ['(not run)'];
  const lines = [
    row([
      'mode',
      'size',
      'system',
      'rate msg/s',
      'p50',
      'p99',
      'p99.9',
      'max',
      'measured',
      'lost',
      'p99 ÷ best peer',
      'note',
    ]),
    '| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |',
  ];
  for (const entry of measurements) {
    lines.push(
      row([
        entry.durability,
        formatSize(entry.messageBytes),
        entry.system,
        formatRate(entry.ratePerSecond),
        formatMicroseconds(entry.p50Us),
        formatMicroseconds(entry.p99Us),
        formatMicroseconds(entry.p999Us),
        formatMicroseconds(entry.maxUs),
        String(entry.measured),
        String(entry.lost),
        entry.p99RatioToBestPeer === undefined
          ? '–'
          : `${formatRatio(entry.p99RatioToBestPeer)} (${entry.bestPeer})`,
        [
          entry.perRunP99Us === undefined
            ? ''
            : `median of ${entry.perRunP99Us.length} runs (p99 ${entry.perRunP99Us.map(formatMicroseconds).join(' / ')})`,
          entry.saturated === undefined ? '' : `saturated: ${entry.saturated}`,
        ]
          .filter((part) => part !== '')
          .join('; '),
      ]),
    );
  }
  return lines;
}

/** The at-a-glance table: msg/s per system, one line per cell (mode, size, clients, partitions). */
export function summaryTable(results: CompareResults, scenario: ThroughputMeasurement['scenario']): string[] {
  const systems = results.options.systems;
  const measurements = results.throughput.filter((entry) => entry.scenario === scenario);
  const keys = new Map<string, ThroughputMeasurement>();
  for (const entry of sortThroughput(measurements)) {
    keys.set(`${entry.durability}|${entry.messageBytes}|${entry.clients}|${entry.partitions}`, entry);
  }
  const lines = [
    row([
      'mode',
      'size',
      scenario === 'produce' ? 'producers' : 'consumers',
      'partitions',
      ...systems.map((system) => `${system} msg/s`),
      'spillway ÷ best peer',
    ]),
    `| --- | --- | ---: | ---: | ${systems.map(() => '---:').join(' | ')} | ---: |`,
  ];
  for (const entry of keys.values()) {
    const same = measurements.filter(
      (other) =>
        other.durability === entry.durability &&
        other.messageBytes === entry.messageBytes &&
        other.clients === entry.clients &&
        other.partitions === entry.partitions,
    );
    const cells = systems.map((system) => {
      const found = same.find((other) => other.system === system);
      if (found !== undefined) return formatRate(found.messagesPerSecond);
      const target = targetOf(results, system, entry.durability);
      if (target === undefined) return '–';
      if (target.status !== 'measured') return target.status;
      return entry.partitions > 1 ? 'n/a' : 'failed';
    });
    const spillway = same.find((other) => other.system === 'spillway');
    lines.push(
      row([
        entry.durability,
        formatSize(entry.messageBytes),
        String(entry.clients),
        String(entry.partitions),
        ...cells,
        formatRatio(spillway?.ratioToBestPeer),
      ]),
    );
  }
  return lines;
}

/** The guarantees section: per system and mode, the setting and what an acknowledgement means. */
function guaranteeTable(results: CompareResults): string[] {
  const lines = [
    row(['system', 'mode', 'setting', 'status', 'what an acknowledgement guarantees']),
    '| --- | --- | --- | --- | --- |',
  ];
  for (const target of results.targets) {
    const status =
      target.status === 'measured'
        ? `measured (${target.version ?? 'version unknown'})`
        : `${target.status}: ${target.reason ?? ''}`;
    lines.push(row([target.system, target.durability, target.setting, status, target.guarantee]));
  }
  return lines;
}

const likeWithLike = [
  'Comparisons are like with like: a figure is only set against figures of the same durability mode,',
  'message size, client count and partition count, and each system runs at the setting whose',
  'acknowledgement keeps the promise of that mode (table above). Where a system has no such setting the',
  'cell is `n/a` with the reason, and a system that cannot run here is `unavailable` with the reason;',
  'nothing is filled in from elsewhere.',
  '',
  '- `none`: every system acknowledges before any fsync (Spillway none, NATS default sync, Redis',
  '  appendfsync no). All survive a crash of the broker process; none survives a power failure for the',
  '  data not yet written back by the kernel.',
  '- `interval`: acknowledged before the fsync, synced on a timer: Spillway every 200 ms, Redis every',
  '  second (so Redis may lose up to ~5x more on power failure than Spillway in this mode).',
  '- `always`: acknowledged after an fsync covering the message (Spillway group commit, Redis',
  '  appendfsync always, RabbitMQ quorum queue with publisher confirms, NATS sync_interval always where',
  '  the installed server has it).',
  '- Every system runs alone on 127.0.0.1 (one at a time), clients in one Node.js process with the',
  '  official client (nats, redis, amqplib; Spillway: its own client over WebSocket), the same payload',
  '  bytes (fixed seed), the same windows (1,000 publishes in flight per producer, consume batches of',
  '  1,000).',
  '- Known differences that favour one side: Spillway has no consumer groups or acknowledgements yet,',
  '  so its consumers keep the position themselves while the peers acknowledge every batch to the broker',
  '  (consume figures favour Spillway); its consumers receive into reused buffers (reuseReceiveBuffers:',
  "  each value is valid until the next message is taken, checked before that), the peers' clients",
  '  allocate per message. Peers are driven with one stream or queue, so partition counts',
  '  above 1 are Spillway only. Spillway batches records on the client, as Kafka-style clients do',
  `  (${spillwayProducerSettings}; the broker suite uses the same); node-redis pipelines 100 XADDs per`,
  '  round trip; nats.js and amqplib send one message per publish. In flight on the wire: Spillway at',
  '  most the 1,000 messages of the window and 4 MiB per partition, whichever is less (16 KiB: 256',
  '  messages); the peers the 1,000 messages of the window.',
];

/** How the run warmed the systems up (every system alike). */
function warmUpLines(throughputWarmUpMs: number): string[] {
  const throughput =
    throughputWarmUpMs > 0
      ? [
          '- Warm-up, every system alike: before the first produce/consume cell of each message size, rounds of',
          `  that workload (1 client, 1 partition) run unmeasured for at least ${throughputWarmUpMs} ms (\`--warm-up-ms\`;`,
          '  their MB/s are in the note of that cell). A broker process started for the cells otherwise',
          '  measures its own JIT warm-up (Spillway at 16 KiB: about half the steady rate in its first 256 MiB).',
        ]
      : ['- No throughput warm-up (`--warm-up-ms 0`): the first cells of each size measure cold systems.'];
  return [...throughput, '- Each latency run starts after 2 s of warm-up round trips, every system alike.'];
}

export function compareMarkdown(results: CompareResults): string {
  const options = results.options;
  const sweepBytes = sweepMessageBytes(options.sizes);
  const sections = [
    '## Comparison with peer brokers',
    '',
    `Matrix: systems ${options.systems.join(', ')}; durability ${options.durabilities.join(', ')}; sizes ${options.sizes.map(formatSize).join(', ')}; ` +
      `producers/consumers ${options.clients.join(', ')}; partitions ${options.partitions.join(', ')}; scenarios ${options.scenarios.join(', ')}; ` +
      `${options.runs} run(s) per cell, each phase capped at ${options.durationMs} ms and ${options.messagesMax.toLocaleString('en-US')} messages / ${Math.round(options.bytesMax / 2 ** 20)} MiB; ` +
      `${options.throughputWarmUpMs > 0 ? `before the first produce/consume cell of each size, per system and mode, ${options.throughputWarmUpMs} ms or more of unmeasured rounds of it (1 client, 1 partition); ` : 'no throughput warm-up; '}` +
      `latency at ${formatRate(options.latencyRatePerSecond)} msg/s; sweep at ${formatSize(sweepBytes)}, ${options.sweepRatesPerSecond.map(formatRate).join(', ')} msg/s ` +
      `(${options.sweepStepDurationMs} ms each). ${results.steps} steps in ${results.durationSeconds.toFixed(0)} s.`,
    '',
    '### Physical reference (this machine, this run)',
    '',
    ...referenceLines(results.reference),
    '',
    'Every throughput figure is also given as its payload MB/s ÷ the reference of its mode (÷ reference) and as',
    'its msg/s ÷ the best peer in the same cell (÷ best peer; peers are every system but Spillway).',
    '',
    '### Produce at a glance (msg/s)',
    '',
    ...summaryTable(results, 'produce'),
    '',
    '### Consume at a glance (msg/s)',
    '',
    ...summaryTable(results, 'consume'),
    '',
    '### Produce',
    '',
    ...throughputTable(results, 'produce'),
    '',
    '### Consume',
    '',
    ...throughputTable(results, 'consume'),
    '',
    ...(options.scenarios.includes('queue')
      ? [
          '### Queue mode with per-message ack (msg/s acked)',
          '',
          'Consume in queue mode, every message acknowledged on its own: Spillway shared-mode consumers',
          '(`msg.ack()`, acks confirmed durable), RabbitMQ quorum queue with manual ack per delivery (AMQP',
          'does not confirm acks), NATS JetStream AckPolicy.Explicit (a flush after the last ack), Redis',
          'XREADGROUP + one XACK per entry (replies awaited). Filled first by a produce of the same cell (not timed).',
          '',
          ...summaryTable(results, 'queue'),
          '',
          ...throughputTable(results, 'queue'),
          '',
        ]
      : []),
    `### End-to-end latency at ${formatRate(options.latencyRatePerSecond)} msg/s (1 producer, 1 consumer, open loop)`,
    '',
    ...latencyTable(results, 'latency'),
    '',
    `### Latency sweep (${formatSize(sweepBytes)}, ascending offered rates, stops at the first the system does not sustain)`,
    '',
    ...latencyTable(results, 'sweep'),
    '',
    '### Settings and what they guarantee',
    '',
    ...guaranteeTable(results),
    '',
    ...likeWithLike,
    ...warmUpLines(options.throughputWarmUpMs),
  ];
  if (results.failures.length > 0) {
    sections.push('', '### Failures', '');
    for (const failure of results.failures) {
      sections.push(`- ${failure.system} ${failure.durability} ${failure.what}: ${cell(failure.error)}`);
    }
  }
  return `${sections.join('\n')}\n`;
}

// -------------------------------------------------------------------------------------------- charts

export interface ChartFile {
  /** File name inside the charts directory: 'produce-1KiB-1p-1part.svg'. */
  file: string;
  title: string;
  svg: string;
}

/** Why a system has no bar in a throughput cell. */
function missingLabel(
  results: CompareResults,
  system: SystemName,
  durability: Durability,
  partitions: number,
): string {
  const target = targetOf(results, system, durability);
  if (target === undefined) return 'not run';
  if (target.status === 'n/a') return 'n/a';
  if (target.status !== 'measured') return target.status;
  return partitions > 1 && system !== 'spillway' ? 'n/a' : 'failed';
}

export function compareCharts(results: CompareResults): ChartFile[] {
  const charts: ChartFile[] = [];
  const { systems, durabilities } = results.options;
  const footnote =
    'n/a: the system has no setting with this guarantee, or (partitions > 1) drives one stream only · unavailable: cannot run here';

  for (const scenario of ['produce', 'consume'] as const) {
    const cells = new Map<string, ThroughputMeasurement>();
    for (const entry of sortThroughput(results.throughput.filter((item) => item.scenario === scenario))) {
      cells.set(`${entry.messageBytes}|${entry.clients}|${entry.partitions}`, entry);
    }
    for (const { messageBytes, clients, partitions } of cells.values()) {
      const find = (system: SystemName, durability: Durability): ThroughputMeasurement | undefined =>
        results.throughput.find(
          (item) =>
            item.scenario === scenario &&
            item.system === system &&
            item.durability === durability &&
            item.messageBytes === messageBytes &&
            item.clients === clients &&
            item.partitions === partitions,
        );
      const clientsText = `${clients} ${scenario === 'produce' ? 'producer' : 'consumer'}${clients === 1 ? '' : 's'}`;
      const chart: GroupedBarChart = {
        title: `${scenario === 'produce' ? 'Produce' : 'Consume'} throughput by durability mode`,
        subtitle: `${formatSize(messageBytes)} messages · ${clientsText} · ${partitions} partition${partitions === 1 ? '' : 's'} · higher is better`,
        groups: durabilities.map((durability) => `${durability}\n(${modeSummary[durability]})`),
        series: systems.map((system) => ({ name: system, color: systemColors[system] })),
        values: systems.map((system) =>
          durabilities.map((durability) => find(system, durability)?.messagesPerSecond),
        ),
        missing: systems.map((system) =>
          durabilities.map((durability) => missingLabel(results, system, durability, partitions)),
        ),
        yAxisLabel: 'messages per second',
        scale: 'linear',
        format: formatCompact,
        footnote,
      };
      charts.push({
        file: `${scenario}-${formatSize(messageBytes)}-${clients}p-${partitions}part.svg`,
        title: `${chart.title}, ${chart.subtitle}`,
        svg: groupedBarChartSvg(chart),
      });
    }
  }

  const latencySizes = [
    ...new Set(
      results.latency.filter((item) => item.scenario === 'latency').map((item) => item.messageBytes),
    ),
  ].sort((a, b) => a - b);
  for (const messageBytes of latencySizes) {
    const measured = sortLatency(
      results.latency.filter((item) => item.scenario === 'latency' && item.messageBytes === messageBytes),
    ).sort(
      (a, b) =>
        systemIndex(a.system) - systemIndex(b.system) ||
        durabilityOrder.indexOf(a.durability) - durabilityOrder.indexOf(b.durability),
    );
    const absent = results.targets
      .filter(
        (target) =>
          !measured.some((item) => item.system === target.system && item.durability === target.durability),
      )
      .map(
        (target) =>
          `${target.system} ${target.durability} (${target.status === 'measured' ? 'failed' : target.status})`,
      );
    const chart: GroupedBarChart = {
      title: 'End-to-end latency percentiles by system',
      subtitle: `${formatSize(messageBytes)} messages at ${formatRate(results.options.latencyRatePerSecond)} msg/s, 1 producer, 1 consumer · lower is better`,
      groups: measured.map((item) => `${item.system}\n${item.durability}`),
      series: [
        { name: 'p50', color: percentileColors[0] },
        { name: 'p99', color: percentileColors[1] },
        { name: 'p99.9', color: percentileColors[2] },
      ],
      values: [
        measured.map((item) => item.p50Us),
        measured.map((item) => item.p99Us),
        measured.map((item) => item.p999Us),
      ],
      yAxisLabel: 'latency, publish to receipt',
      scale: 'log',
      format: formatMicroseconds,
      ...(absent.length > 0 ? { footnote: `not shown: ${absent.join(', ')}` } : {}),
    };
    charts.push({
      file: `latency-${formatSize(messageBytes)}.svg`,
      title: `${chart.title}, ${chart.subtitle}`,
      svg: groupedBarChartSvg(chart),
    });
  }

  const sweep = results.latency.filter((item) => item.scenario === 'sweep');
  const rates = results.options.sweepRatesPerSecond;
  for (const durability of durabilities) {
    const inMode = sweep.filter((item) => item.durability === durability);
    if (inMode.length === 0) continue;
    const messageBytes = inMode[0]!.messageBytes;
    const chart: GroupedBarChart = {
      title: `Latency sweep, durability ${durability}: p99 by offered rate`,
      subtitle: `${formatSize(messageBytes)} messages, 1 producer, 1 consumer · lower is better · the sweep stops after the first rate not sustained`,
      groups: rates.map((rate) => `${formatRate(rate)} msg/s`),
      series: systems.map((system) => ({ name: system, color: systemColors[system] })),
      values: systems.map((system) =>
        rates.map(
          (rate) => inMode.find((item) => item.system === system && item.ratePerSecond === rate)?.p99Us,
        ),
      ),
      notes: systems.map((system) =>
        rates.map((rate) =>
          inMode.find((item) => item.system === system && item.ratePerSecond === rate)?.saturated ===
          undefined
            ? undefined
            : '(saturated)',
        ),
      ),
      missing: systems.map((system) => {
        const saturatedAt = inMode.find(
          (item) => item.system === system && item.saturated !== undefined,
        )?.ratePerSecond;
        return rates.map((rate) => {
          if (saturatedAt !== undefined && rate > saturatedAt) return 'saturated';
          const target = targetOf(results, system, durability);
          return target === undefined || target.status === 'measured' ? 'failed' : target.status;
        });
      }),
      yAxisLabel: 'p99 latency, publish to receipt',
      scale: 'log',
      format: formatMicroseconds,
      footnote:
        'faded bar (saturated): rate not sustained (lost messages, p50 > 100 ms or the publisher fell behind); higher rates not run',
    };
    charts.push({
      file: `sweep-${durability}-${formatSize(messageBytes)}.svg`,
      title: chart.title,
      svg: groupedBarChartSvg(chart),
    });
  }
  return charts;
}

// ------------------------------------------------------------------------------------------- writing

/** The files a comparison wrote, relative to the results directory. */
export interface WrittenFiles {
  json: string;
  markdown: string;
  charts: string[];
}

/**
 * Writes compare.json, compare.md (with the charts linked) and charts/*.svg into `directory`. Each
 * file is written to a temporary name and renamed, so a reader never sees half a file.
 */
export function writeCompareOutputs(directory: string, results: CompareResults): WrittenFiles {
  const chartDirectory = path.join(directory, 'charts');
  mkdirSync(chartDirectory, { recursive: true });
  const charts = compareCharts(results);
  for (const chart of charts) {
    checkWellFormedSvg(chart.svg); // a broken chart fails the run rather than reach the docs
    writeAtomically(path.join(chartDirectory, chart.file), chart.svg);
  }
  const chartLinks = charts.map((chart) => `![${chart.title}](charts/${chart.file})`);
  const markdown = `${compareMarkdown(results)}\n### Charts\n\n${chartLinks.join('\n\n')}\n`;
  writeAtomically(path.join(directory, 'compare.md'), markdown);
  writeAtomically(path.join(directory, 'compare.json'), `${JSON.stringify(results, null, 2)}\n`);
  return {
    json: 'compare.json',
    markdown: 'compare.md',
    charts: charts.map((chart) => path.join('charts', chart.file)),
  };
}

function writeAtomically(file: string, text: string): void {
  const temporary = `${file}.tmp`;
  writeFileSync(temporary, text);
  renameSync(temporary, file);
}
