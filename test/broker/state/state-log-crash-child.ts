/**
 * Child process of state-log-crash.test.ts, run compiled (`node dist/test/broker/state/state-log-crash-child.js DIR`)
 * and killed with SIGKILL by the parent at a random moment, often while a snapshot is being written
 * (snapshots are due every few KiB here) or segments behind one are being deleted.
 *
 * Opens a PartitionLog (`always`, 64 KiB segments) in DIR and a StateLog of a KeyValueState over it,
 * prints `{"opened":{"state":{...},"recovery":{...}}}` (the state as recovered), then runs
 * `writerCount` writers that commit without awaiting each other: writer w puts `w<w>/<seq % 40>` =
 * seq and `w<w>` = seq for seq = 1, 2, ... (values grow per key), a few at a time. Each acknowledged
 * commit prints `{"key":K,"seq":S}`. It never closes the log.
 */
import { KeyValueState, keyValueCodec, msgpackValues } from '../../../src/broker/state/key-value-state.js';
import { StateLog } from '../../../src/broker/state/state-log.js';
import { PartitionLog } from '../../../src/storage/partition-log.js';

export const writerCount = 4;
export const keysPerWriter = 40;

const directory = process.argv[2]!;
const log = await PartitionLog.open({
  directory,
  durability: 'always',
  segmentBytes: 64 * 1024,
  spareSegment: false,
});
const machine = new KeyValueState<number>();
const state = StateLog.open({
  name: 'crash/0',
  log,
  machine,
  codec: keyValueCodec<number>(
    msgpackValues((value) => {
      if (typeof value !== 'number' || !Number.isSafeInteger(value))
        throw new Error('value must be an integer');
      return value;
    }),
  ),
  snapshotBytesMin: 4096,
  batchBytesMax: 2048,
});
const recovered = Object.fromEntries(machine.view());
const { snapshotOffset, skippedSnapshots, changesReplayed, logStartOffset } = state.recovery;
process.stdout.write(
  `${JSON.stringify({ opened: { state: recovered, recovery: { snapshotOffset, skippedSnapshots, changesReplayed, logStartOffset } } })}\n`,
);

async function writer(w: number): Promise<void> {
  const start = (recovered[`w${w}`] ?? 0) + 1;
  for (let seq = start; ; seq += 3) {
    const commits = [0, 1, 2].flatMap((step) => {
      const value = seq + step;
      const keys = [`w${w}/${value % keysPerWriter}`, `w${w}`];
      return keys.map((key) =>
        state
          .commit({ op: 'put', key, value })
          .then(() => process.stdout.write(`${JSON.stringify({ key, seq: value })}\n`)),
      );
    });
    await Promise.all(commits);
  }
}

await Promise.all(Array.from({ length: writerCount }, (_, w) => writer(w)));
