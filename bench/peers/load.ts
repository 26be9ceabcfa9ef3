/**
 * The load loops shared by every peer: a windowed pipeline of acknowledged operations, and an
 * open-loop latency run with a histogram. Every loop is bounded in count and in time.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import * as hdr from 'hdr-histogram-js';
import { collectGarbage } from '../suites/append.js';
import { LatencyPayloads, latencyIndexBytes, payloadIndex, payloadPool } from './payload.js';
import type { LatencyOptions, LatencyResult } from './peer.js';
import { waitAtMost } from './wait.js';

/** Publishes in flight per producer connection, awaiting acknowledgements (pipelining window). */
export const publishWindow = 1000;

/** Messages a consumer fetches at once, and acknowledges at once. */
export const consumeBatchMessages = 1000;

/** Unacknowledged messages a consumer may hold (prefetch, max_ack_pending): two batches, so the broker keeps sending while one ack travels. */
export const consumeUnackedMax = 2 * consumeBatchMessages;

/** Latency messages sent before measuring (connections, JIT and caches warm up). */
export const latencyWarmUpMessages = 100;

/**
 * Before each latency run's clock starts: round trips (publish one message, wait until it is received,
 * then the next) for this long. A broker process started for the cells (and the measuring process)
 * still compiles its hot paths for seconds: in a 6 s run after 500 messages, Spillway's broker ran 79
 * optimizing compiles (167 ms of a second thread's CPU) and the client 109 (219 ms) while messages
 * were measured, on a 2-vCPU machine; the p99 measured that warm-up, not the steady state a running
 * broker serves (issue 15, session 9). Every system gets the same warm-up.
 */
export const latencyWarmUpMs = 2000;

/** The index a warm-up payload carries: never a measured message's. */
const warmUpPayloadIndex = 0xffff_ffff;

/** Longest wait for one warm-up message to arrive; past it the warm-up ends (the run then measures as before). */
const warmUpReceiveTimeoutMs = 1000;

/** After the last latency message is sent, how long to wait for stragglers. */
export const latencyDrainMs = 5000;

/** Payload buffers made before a latency run (at most; fewer for short runs): LatencyPayloads. */
export const latencyPayloadSlotsMax = 1024;

/** Publishes sent in one tick of the latency loop at most, so a stalled timer cannot burst without bound. */
const latencyBurstMax = 1000;

/**
 * Runs `issue(index)` for index 0..count-1 with at most `window` in flight; issues nothing new past
 * `deadline` (performance.now() ms). Each operation resolves with how many messages it carried (1, or
 * a pipeline's size). Resolves with the sum over completed operations; rejects on the first error
 * once the operations in flight have settled.
 */
export async function pipelined(
  count: number,
  window: number,
  deadline: number,
  issue: (index: number) => Promise<number>,
): Promise<number> {
  if (count <= 0) return 0;
  return new Promise((resolve, reject) => {
    let next = 0;
    let inFlight = 0;
    let completed = 0;
    let failure: unknown;
    const pump = (): void => {
      while (failure === undefined && inFlight < window && next < count && performance.now() < deadline) {
        const index = next;
        next += 1;
        inFlight += 1;
        issue(index).then(
          (messages) => {
            inFlight -= 1;
            completed += messages;
            pump();
          },
          (error: unknown) => {
            inFlight -= 1;
            failure ??= error;
            pump();
          },
        );
      }
      if (inFlight === 0) {
        if (failure !== undefined) reject(failure);
        else resolve(completed);
      }
    };
    pump();
  });
}

/** Messages and payload bytes per second over `elapsedMs`. */
export function throughput(
  count: number,
  messageBytes: number,
  elapsedMs: number,
): { messagesPerSecond: number; bytesPerSecond: number; elapsedMs: number } {
  const seconds = Math.max(elapsedMs, 1e-3) / 1000;
  return { messagesPerSecond: count / seconds, bytesPerSecond: (count * messageBytes) / seconds, elapsedMs };
}

/** A received payload must have the size that was sent: a broker or client bug must not pass for speed. */
export function checkPayloadBytes(payload: Uint8Array, messageBytes: number): void {
  if (payload.length !== messageBytes) {
    throw new Error(`payload of ${payload.length} bytes, expected ${messageBytes}`);
  }
}

/** Splits `total` into `parts` counts differing by at most one. */
export function split(total: number, parts: number): number[] {
  const base = Math.floor(total / parts);
  return Array.from({ length: parts }, (_, part) => base + (part < total % parts ? 1 : 0));
}

export interface LatencyHooks {
  /** Starts the live consumer; it must call `onPayload` with each payload received. Resolves once it is subscribed. */
  startConsumer(onPayload: (payload: Uint8Array) => void): Promise<void>;
  /** Publishes one payload (the promise settles with the broker's acknowledgement, if any; it is not awaited before the next send). */
  send(payload: Buffer): Promise<unknown>;
  /** Stops the consumer (after the run, or on failure). */
  stopConsumer(): Promise<void>;
}

/**
 * Round trips for `latencyWarmUpMs` (see there): one warm-up payload at a time, the next once it was
 * received and its publish settled. Ends early when one is not received within
 * `warmUpReceiveTimeoutMs`; a publish failure is left to the run itself. Returns the round trips made.
 */
async function warmUpRoundTrips(
  messageBytes: number,
  hooks: LatencyHooks,
  onReceived: (resolve: () => void) => void,
): Promise<number> {
  const payload = Buffer.alloc(Math.max(messageBytes, latencyIndexBytes));
  payload.writeUInt32BE(warmUpPayloadIndex, 0);
  const deadline = performance.now() + latencyWarmUpMs;
  let roundTrips = 0;
  while (performance.now() < deadline) {
    const received = new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), warmUpReceiveTimeoutMs);
      onReceived(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
    const sent = hooks.send(payload).then(
      () => true,
      () => false,
    );
    const [arrived, acknowledged] = await Promise.all([received, sent]);
    if (!arrived || !acknowledged) break;
    roundTrips += 1;
  }
  return roundTrips;
}

/**
 * Open-loop latency: messages published at `ratePerSecond` for `durationMs`, each carrying its
 * index; latency = time of receipt − time of the publish call, both `performance.now()` in this
 * process. Before the clock starts, `latencyWarmUpMs` of warm-up round trips; then the first
 * `latencyWarmUpMessages` are not measured either. The payloads are made before the
 * clock starts (LatencyPayloads): the loop allocates no message bytes of its own; a full GC runs
 * before the warm-up, so garbage of the setup and of earlier runs is not collected during this one.
 */
export async function measureLatency(options: LatencyOptions, hooks: LatencyHooks): Promise<LatencyResult> {
  const total = Math.max(1, Math.floor((options.ratePerSecond * options.durationMs) / 1000));
  const warmUp = Math.min(latencyWarmUpMessages, Math.floor(total / 10));
  const pool = payloadPool(options.messageBytes);
  const payloads = new LatencyPayloads(pool, Math.min(total, latencyPayloadSlotsMax));
  const sentAt = new Float64Array(total).fill(Number.NaN);
  const received = new Uint8Array(total);
  /** Message i's send promise settled (1): with received[i], its payload slot may be used again. */
  const settled = new Uint8Array(total);
  const reusable = (earlier: number): boolean => received[earlier] === 1 && settled[earlier] === 1;
  // µs, 1 µs to 60 s at 3 significant digits; longer is clamped (and visible as max).
  const histogram = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000 });
  let receivedCount = 0;
  let unexpected = 0;
  let sendFailure: unknown;
  let allReceived: () => void = () => {};
  const done = new Promise<void>((resolve) => {
    allReceived = resolve;
  });
  let warmUpReceived: () => void = () => {};
  const onPayload = (payload: Uint8Array): void => {
    const now = performance.now();
    const index = payloadIndex(payload);
    if (index === warmUpPayloadIndex) {
      warmUpReceived();
      return;
    }
    if (index >= total || received[index] === 1 || Number.isNaN(sentAt[index]!)) {
      unexpected += 1;
      return;
    }
    received[index] = 1;
    receivedCount += 1;
    if (index >= warmUp) {
      const latencyUs = Math.round((now - sentAt[index]!) * 1000);
      histogram.recordValue(Math.min(60_000_000, Math.max(1, latencyUs)));
    }
    if (receivedCount === total) allReceived();
  };

  await hooks.startConsumer(onPayload);
  try {
    // The previous run's payloads, topic and clients are garbage now: collected here, not while
    // this run measures (a full GC of them took 10-50 ms in the middle of a 16 KiB run). Before
    // the warm-up, not after it: for ~3 s after the forced full GCs the measuring process is slow
    // (the heap it gave back is taken again; on this VM freed memory is handed to the host and a
    // first touch faults), which the measured run paid: at 1,000 msg/s `always` 100 B, p99 of 2 s
    // runs 1.2-3.0 ms with the GC after the warm-up vs 0.35-0.98 ms with it before (alternated,
    // session 10; not code flushing: --no-flush-bytecode did not change it). Every system alike.
    await collectGarbage();
    const warmUpRoundTripCount = await warmUpRoundTrips(options.messageBytes, hooks, (resolve) => {
      warmUpReceived = resolve;
    });
    warmUpReceived = () => {};
    const intervalMs = 1000 / options.ratePerSecond;
    const start = performance.now();
    let sent = 0;
    let producerLagMaxMs = 0;
    while (sent < total && sendFailure === undefined) {
      const now = performance.now();
      const due = Math.min(total, Math.floor((now - start) / intervalMs) + 1);
      let burst = 0;
      while (sent < due && burst < latencyBurstMax) {
        const lag = performance.now() - (start + sent * intervalMs);
        if (lag > producerLagMaxMs) producerLagMaxMs = lag;
        const payload = payloads.take(sent, reusable);
        const index = sent;
        sentAt[sent] = performance.now();
        hooks.send(payload).then(
          () => {
            settled[index] = 1;
          },
          (error: unknown) => {
            sendFailure ??= error;
          },
        );
        sent += 1;
        burst += 1;
      }
      const nextDue = start + sent * intervalMs;
      await sleep(Math.max(0, nextDue - performance.now()));
    }
    if (sendFailure !== undefined) throw sendFailure;
    await waitAtMost(done, latencyDrainMs);
    if (sendFailure !== undefined) throw sendFailure;
    if (unexpected > 0) throw new Error(`latency run: ${unexpected} unexpected or duplicate messages`);
    if (histogram.totalCount === 0) throw new Error(`latency run: none of ${total} messages was received`);
    return {
      p50Us: histogram.getValueAtPercentile(50),
      p99Us: histogram.getValueAtPercentile(99),
      p999Us: histogram.getValueAtPercentile(99.9),
      maxUs: histogram.maxValue,
      measured: histogram.totalCount,
      lost: total - receivedCount,
      producerLagMaxMs,
      warmUpRoundTrips: warmUpRoundTripCount,
    };
  } finally {
    histogram.destroy();
    await hooks.stopConsumer();
  }
}
