/**
 * The worker module of the consume-pool suite: a no-op handler that counts what it handled and
 * reports the count to the main thread over a BroadcastChannel every 2 ms (so the suite knows when
 * every message was handled without a message per message).
 */
import { BroadcastChannel } from 'node:worker_threads';

export const poolBenchChannel = 'spillway-bench-consume-pool';

const channel = new BroadcastChannel(poolBenchChannel);
channel.unref();
let handled = 0;
setInterval(() => {
  if (handled === 0) return;
  channel.postMessage(handled);
  handled = 0;
}, 2).unref();

export function handler(): void {
  handled++;
}
