import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { formatValue, loadSuite, suiteNames } from '../../bench/harness.js';
import { type BenchResults, BenchUsageError, runBench } from '../../bench/main.js';
import { referenceRowNames } from '../../bench/suites/reference.js';

const temporaryDirectories: string[] = [];
function temporaryDirectory(): string {
  const directory = mkdtempSync(path.join(tmpdir(), 'spillway-bench-test-'));
  temporaryDirectories.push(directory);
  return directory;
}
afterEach(() => {
  for (const directory of temporaryDirectories.splice(0)) rmSync(directory, { recursive: true, force: true });
});

const silent = { write: () => {}, log: () => {} };

describe('runBench', () => {
  it('runs the reference suite quickly and writes results.json and results.md', async () => {
    const out = path.join(temporaryDirectory(), 'results');
    const scratch = temporaryDirectory(); // the parent of the run's scratch directory
    let printed = '';
    const result = await runBench({
      quick: true,
      suites: ['reference'],
      out,
      scratch,
      commandLine: ['test'],
      write: (text) => {
        printed += text;
      },
      log: () => {},
    });

    expect(result.exitCode).toBe(0);
    expect(result.outDirectory).toBe(path.resolve(out));
    const results = JSON.parse(readFileSync(path.join(out, 'results.json'), 'utf8')) as BenchResults;
    const { metadata, rows } = results;
    expect(metadata.quick).toBe(true);
    expect(metadata.nodeVersion).toBe(process.version);
    expect(metadata.cpuModel.length).toBeGreaterThan(0);
    expect(metadata.cpuCores).toBeGreaterThan(0);
    expect(metadata.totalMemoryBytes).toBeGreaterThan(0);
    expect(metadata.kernel.length).toBeGreaterThan(0);
    expect(metadata.commandLine).toEqual(['test']);
    expect(Date.parse(metadata.date)).not.toBeNaN();
    expect(metadata.suitesFailed).toEqual([]);

    expect(rows.map((row) => row.name).sort()).toEqual(Object.values(referenceRowNames).sort());
    for (const row of rows) {
      expect(row.suite).toBe('reference');
      expect(Number.isFinite(row.value), row.name).toBe(true);
      expect(row.value, row.name).toBeGreaterThan(0);
      expect(row.unit.length).toBeGreaterThan(0);
    }

    const markdown = readFileSync(path.join(out, 'results.md'), 'utf8');
    expect(markdown).toContain('| suite | name | value | unit | detail |');
    expect(markdown).toContain(`node: ${process.version}`);
    for (const name of Object.values(referenceRowNames)) {
      expect(markdown).toContain(`| reference | ${name} |`);
      expect(printed).toContain(`| reference | ${name} |`);
    }
    // The run's scratch directory is gone; only the parent we gave remains.
    expect(readdirSync(scratch)).toEqual([]);
  }, 15_000);

  it('rejects an unknown suite name before writing anything', async () => {
    const out = path.join(temporaryDirectory(), 'results');
    const run = runBench({ quick: true, suites: ['no-such-suite'], out, ...silent });
    await expect(run).rejects.toBeInstanceOf(BenchUsageError);
    await expect(run).rejects.toThrow(/unknown suite no-such-suite/);
    expect(existsSync(out)).toBe(false);
  });

  it('rejects a known suite asked for by name whose module does not exist', async () => {
    const out = path.join(temporaryDirectory(), 'results');
    const suiteDirectory = temporaryDirectory();
    const run = runBench({ quick: true, suites: ['crc32c'], out, suiteDirectory, ...silent });
    await expect(run).rejects.toThrow(/suite 'crc32c' skipped/);
    expect(existsSync(out)).toBe(false);
  });

  it('skips missing modules when running all, and exits 1 (keeping results) when a suite throws', async () => {
    const suiteDirectory = temporaryDirectory();
    writeFileSync(
      path.join(suiteDirectory, 'reference.ts'),
      `export const suite = { name: 'reference', async run() {
        return [{ suite: 'reference', name: 'memcpy', value: 1, unit: 'GB/s' }];
      } };\n`,
    );
    writeFileSync(
      path.join(suiteDirectory, 'append.ts'),
      `export const suite = { name: 'append', async run() { throw new Error('disk on fire'); } };\n`,
    );
    const out = path.join(temporaryDirectory(), 'results');
    const result = await runBench({
      quick: true,
      out,
      suiteDirectory,
      scratch: temporaryDirectory(),
      ...silent,
    });
    expect(result.exitCode).toBe(1);
    const results = JSON.parse(readFileSync(path.join(out, 'results.json'), 'utf8')) as BenchResults;
    expect(results.rows).toEqual([{ suite: 'reference', name: 'memcpy', value: 1, unit: 'GB/s' }]);
    // Every listed suite without a module in the fake suite directory is skipped.
    expect(results.metadata.suitesSkipped).toEqual(
      suiteNames.filter((name) => name !== 'reference' && name !== 'append'),
    );
    expect(results.metadata.suitesFailed).toEqual([{ suite: 'append', error: 'disk on fire' }]);
    expect(readFileSync(path.join(out, 'results.md'), 'utf8')).toContain('FAILED append: disk on fire');
  });
});

describe('loadSuite', () => {
  it('fails loudly on a module that exists but does not load', async () => {
    const directory = temporaryDirectory();
    writeFileSync(
      path.join(directory, 'read.ts'),
      `import './does-not-exist.js';\nexport const suite = {};\n`,
    );
    await expect(loadSuite('read', directory)).rejects.toThrow();
  });

  it('fails on a module without a valid suite export or with the wrong name', async () => {
    const directory = temporaryDirectory();
    writeFileSync(path.join(directory, 'read.ts'), 'export const notASuite = 1;\n');
    writeFileSync(path.join(directory, 'recovery.ts'), `export const suite = { name: 'other', run() {} };\n`);
    await expect(loadSuite('read', directory)).rejects.toThrow(/does not export/);
    await expect(loadSuite('recovery', directory)).rejects.toThrow(/named 'other'/);
  });
});

describe('formatValue', () => {
  it('keeps three significant digits without exponents', () => {
    expect(formatValue(3412.7)).toBe('3,413');
    expect(formatValue(237.4)).toBe('237');
    expect(formatValue(15.24)).toBe('15.2');
    expect(formatValue(0.04213)).toBe('0.0421');
    expect(formatValue(7)).toBe('7');
    expect(formatValue(0)).toBe('0');
  });
});
