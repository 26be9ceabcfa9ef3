/**
 * The peer brokers (NATS JetStream, Redis Streams, RabbitMQ quorum queues) on this machine, through
 * the same workload Spillway runs: 100-byte messages, one producer and one consumer, acknowledged
 * publishes, end-to-end latency at a fixed rate. See bench/peers/. The servers come from Debian
 * packages (`node dist/bench/peers/install.js` as root); a peer that is missing or cannot start is
 * reported as an 'unavailable' row, never skipped silently.
 *
 * `SPILLWAY_BENCH_PEERS=redis,nats-default` restricts the peers (ids or prefixes of peerFactories).
 */
import { peersSuiteName, runPeers } from '../peers/index.js';
import type { BenchContext, BenchRow, BenchSuite } from '../report.js';

export const suite: BenchSuite = {
  name: peersSuiteName,
  async run(context: BenchContext): Promise<BenchRow[]> {
    const selected = process.env['SPILLWAY_BENCH_PEERS']
      ?.split(',')
      .map((name) => name.trim())
      .filter((name) => name.length > 0);
    return runPeers({
      scratchDir: context.scratchDir,
      quick: context.quick,
      peers: selected,
      log: context.log,
    });
  },
};
