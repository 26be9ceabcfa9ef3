/**
 * Child process of assert.test.ts (run compiled, with plain `node`): breaks one invariant, named by
 * its first argument, and prints `survived` if the process is still alive afterwards. The storage
 * cases work in the directory given as second argument (the parent removes it: an abort cannot).
 */
import { assert, unreachable } from '../src/assert.js';
import { SpareSegment } from '../src/storage/spare-segment.js';

function withDirectory(action: (directory: string) => void): void {
  const directory = process.argv[3];
  if (directory === undefined) throw new Error('this case needs a directory argument');
  action(directory);
}

const cases: Record<string, () => void> = {
  holds: () => assert(1 + 1 === 2, 'arithmetic works'),
  'assert-false': () => assert(false, 'the invariant under test'),
  'lazy-message': () => assert(false, () => `a lazy message ${6 * 7}`),
  unreachable: () => unreachable('a branch that cannot run'),
  // A caller's catch must not swallow an assertion.
  caught: () => {
    try {
      assert(false, 'caught by a try');
    } catch {
      process.stdout.write('caught\n');
    }
  },
  'spare-capacity': () =>
    withDirectory((directory) => {
      SpareSegment.prepare(directory, 0, { syncWhenFilled: false, zeroWriteBytes: 4096 });
    }),
  'spare-zero-write-small': () =>
    withDirectory((directory) => {
      SpareSegment.prepare(directory, 4096, { syncWhenFilled: false, zeroWriteBytes: 0 });
    }),
  // Still zero-filling (its writes complete on later turns of the event loop): not ready to hand over.
  'spare-take-filling': () =>
    withDirectory((directory) => {
      SpareSegment.prepare(directory, 1024 * 1024, { syncWhenFilled: false, zeroWriteBytes: 4096 }).take();
    }),
  'spare-zero-write-large': () =>
    withDirectory((directory) => {
      SpareSegment.prepare(directory, 4096, { syncWhenFilled: false, zeroWriteBytes: 64 * 1024 * 1024 });
    }),
};

const name = process.argv[2] ?? '';
const run = cases[name];
if (run === undefined) {
  process.stderr.write(`unknown case '${name}'; cases: ${Object.keys(cases).join(', ')}\n`);
  process.exit(2);
}
run();
process.stdout.write('survived\n');
