/**
 * `spillway repair TOPIC PARTITION` and `spillway doctor`, both against a running broker (admin
 * requests REPAIR_PARTITION and INTEGRITY_REPORT, docs/PROTOCOL.md): repair sets the damaged ranges
 * of a stopped partition aside into its quarantine/ folder and prints exactly which offsets; doctor
 * prints what the broker found at open and how to fix each finding. `--json` prints the broker's
 * answer as one JSON document instead. doctor exits 1 while some partition is stopped.
 */
import { parseArgs } from 'node:util';
import { Spillway } from '../../client/index.js';
import type { IntegrityReport, RepairResult } from '../../protocol/broker-api.js';
import { brokerUrlFlag, connectionFlags, connectionOptions, integerFlag, UsageError } from '../cli-error.js';

export const repairUsage = `usage: spillway repair TOPIC PARTITION [--json]
  sets the damaged ranges of a stopped partition aside into its quarantine/ folder (never deleted)
  and serves it again; takes --broker URL (default ws://127.0.0.1:7070), --token T (or SPILLWAY_TOKEN), --ca-file PEM`;

export const doctorUsage = `usage: spillway doctor [--json]
  what the broker found on disk at start (damage, orphans, leftovers) and how to fix each;
  exit 1 while a partition is stopped; takes --broker URL (default ws://127.0.0.1:7070), --token T (or SPILLWAY_TOKEN), --ca-file PEM`;

function parse(argv: string[]) {
  return parseArgs({
    args: argv,
    options: {
      broker: { type: 'string', default: 'ws://127.0.0.1:7070' },
      ...connectionFlags,
      json: { type: 'boolean' },
    },
    strict: true,
    allowPositionals: true,
  });
}

/** The lines `spillway repair` prints for a repair result. */
export function repairLines(result: RepairResult): string[] {
  const where = `${result.topic}/${result.partition}`;
  const lines: string[] = [];
  if (result.recreatedEmpty) {
    lines.push(
      `${where}: the partition directory was missing: created empty, the partition starts again at offset 0`,
    );
  }
  for (const range of result.setAside) {
    const count = range.toOffset - range.fromOffset;
    const offsets =
      count > 0
        ? `offsets ${range.fromOffset}..${range.toOffset - 1} (${count} message(s))`
        : `no offset (the log ended at ${range.fromOffset})`;
    const moved = range.movedFiles.length > 0 ? `; moved to quarantine: ${range.movedFiles.join(', ')}` : '';
    lines.push(
      `${where}: set aside ${offsets}: ${range.kind} in ${range.file} at position ${range.position} (${range.reason})${moved}`,
    );
  }
  const total = result.setAside.reduce((sum, range) => sum + range.toOffset - range.fromOffset, 0);
  lines.push(
    `${where}: serving again, offsets ${result.logStartOffset}..${result.logEndOffset - 1}; ${total} offset(s) set aside in total` +
      (result.setAside.length > 0 ? ` (kept in ${result.quarantineDirectory})` : ''),
  );
  return lines;
}

/** The lines `spillway doctor` prints for an integrity report. */
export function doctorLines(report: IntegrityReport): string[] {
  const lines = [`status: ${report.status}`, report.summary];
  for (const finding of report.findings) {
    const where = finding.topic === undefined ? '' : `${finding.topic}/${finding.partition}: `;
    lines.push(`${finding.severity}: ${where}${finding.what}`, `  fix: ${finding.fix}`);
  }
  for (const damaged of report.damagedPartitions) {
    lines.push(`stopped now: ${damaged.topic}/${damaged.partition}: ${damaged.summary}`);
  }
  for (const repair of report.repairs) {
    const total = repair.setAside.reduce((sum, range) => sum + range.toOffset - range.fromOffset, 0);
    lines.push(
      `repaired since start: ${repair.topic}/${repair.partition}: ${repair.setAside.length} range(s), ${total} offset(s) set aside into ${repair.quarantineDirectory}`,
    );
  }
  if (report.findings.length === 0 && report.damagedPartitions.length === 0) lines.push('nothing to fix');
  return lines;
}

export async function runRepair(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv);
  const [topic, partitionText, ...rest] = positionals;
  if (topic === undefined || partitionText === undefined)
    throw new UsageError('repair needs TOPIC and PARTITION');
  if (rest.length > 0) throw new UsageError(`unexpected argument '${rest[0]}'`);
  const partition = integerFlag('PARTITION', partitionText)!;
  const sw = await Spillway.connect(brokerUrlFlag(values.broker), connectionOptions(values));
  try {
    const result = await sw.admin.repairPartition(topic, partition);
    const text = values.json ? JSON.stringify(result, null, 2) : repairLines(result).join('\n');
    process.stdout.write(`${text}\n`);
  } finally {
    await sw.close();
  }
  return 0;
}

export async function runDoctor(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv);
  if (positionals.length > 0) throw new UsageError(`unexpected argument '${positionals[0]}'`);
  const sw = await Spillway.connect(brokerUrlFlag(values.broker), connectionOptions(values));
  let report: IntegrityReport;
  try {
    report = await sw.admin.integrityReport();
  } finally {
    await sw.close();
  }
  const text = values.json ? JSON.stringify(report, null, 2) : doctorLines(report).join('\n');
  process.stdout.write(`${text}\n`);
  return report.status === 'ok' ? 0 : 1;
}
