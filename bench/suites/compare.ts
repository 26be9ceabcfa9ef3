/**
 * Spillway and the peer brokers side by side (bench/compare/): produce, consume, end-to-end latency
 * at a fixed rate and a latency sweep, by durability mode, message size, client and partition count,
 * every throughput figure also as a ratio to this machine's physical reference and to the best peer
 * at equal durability. Writes compare.json, compare.md and charts/*.svg into the results directory.
 *
 * The reference figures come from the 'reference' suite when it ran before in this process (bench/main
 * runs it whenever 'compare' is selected); otherwise this suite measures them itself first.
 * Options: the comparison flags of the bench command line (bench/compare/options.ts), given through
 * the context by bench/main.ts; the defaults otherwise.
 */

import { mkdirSync } from 'node:fs';
import * as path from 'node:path';
import { type CompareContextExtras, resolveCompareOptions } from '../compare/options.js';
import { compareRows, compareSuiteName, writeCompareOutputs } from '../compare/report.js';
import { referenceFiguresOf } from '../compare/results.js';
import { runCompare } from '../compare/runner.js';
import type { BenchContext, BenchRow, BenchSuite } from '../report.js';
import { suite as referenceSuite, referenceSuiteName } from './reference.js';

export const suite: BenchSuite = {
  name: compareSuiteName,
  async run(context: BenchContext & CompareContextExtras): Promise<BenchRow[]> {
    const options = context.compareOptions ?? resolveCompareOptions({}, context.quick);
    let reference = referenceFiguresOf(context.previous);
    if (reference.pageCacheWriteMegabytesPerSecond === undefined) {
      context.log('no reference rows in this run: measuring the reference first');
      const scratch = path.join(context.scratchDir, referenceSuiteName);
      mkdirSync(scratch, { recursive: true });
      const rows = await referenceSuite.run({
        ...context,
        scratchDir: scratch,
        log: (line) => context.log(`reference: ${line}`),
      });
      reference = referenceFiguresOf(rows);
    }
    const results = await runCompare(options, {
      scratchDir: context.scratchDir,
      reference,
      log: context.log,
    });
    if (context.outDirectory !== undefined) {
      const written = writeCompareOutputs(context.outDirectory, results);
      context.log(
        `wrote ${written.markdown}, ${written.json} and ${written.charts.length} charts in ${context.outDirectory}`,
      );
    }
    return compareRows(results);
  },
};
