/**
 * The background scrub: re-verifies the CRC32C (native) of every batch of every sealed segment of
 * every partition, at a bounded rate, and reports damage (bit rot) before a consumer meets it. It
 * never changes data: a finding is recorded (`stats.findings`, metrics, listeners) and left to the
 * operator (docs/OPERATIONS.md, "Scrub"). The active segment is not scrubbed: its batches were
 * verified when appended and by recovery after a crash, and they are read back by consumers first.
 *
 * A pass walks the partitions in order, each one's sealed segments oldest first, in slices of whole
 * batches (`verifyBatches`, storage/batch-verifier.ts) read through the segments' read-only maps
 * (views stay valid if retention deletes the segment meanwhile). Between slices it yields to the
 * event loop, and sleeps as long as needed to keep to `bytesPerSecond` over the pass; a slice is
 * about 1/20 s of work at that rate (64 KiB to 8 MiB), so the event loop is never held long. After
 * a pass it waits `passIntervalMs`, then starts over. A finding is recorded only if the segment is
 * still one of the log's sealed segments (a truncation may have reopened it meanwhile).
 *
 * Concurrency: one event loop; at most one pass runs at a time (`scrubPass` waits for a running one).
 */

import { type Clock, systemClock } from '../clock.js';
import { scrubFindingsMax } from '../limits.js';
import { crc32c as nativeCrc32c } from '../native.js';
import type { ScrubFinding } from '../protocol/broker-api.js';
import { verifyBatches } from '../storage/batch-verifier.js';
import type { PartitionLog } from '../storage/partition-log.js';
import type { Crc32cFunction } from '../storage/segment-scan.js';

export interface ScrubTarget {
  topic: string;
  partition: number;
  log: PartitionLog;
}

export type { ScrubFinding } from '../protocol/broker-api.js';

export interface ScrubStats {
  /** Configured rate; 0 when the scrub is off. */
  bytesPerSecond: number;
  running: boolean;
  passesCompleted: number;
  bytesScrubbed: number;
  batchesScrubbed: number;
  segmentsScrubbed: number;
  /** Distinct damaged places found since the broker opened. */
  damageFound: number;
  /** The last `scrubFindingsMax` distinct findings, oldest first. */
  findings: ScrubFinding[];
}

/** What one pass did. */
export interface ScrubPassResult {
  bytes: number;
  batches: number;
  segments: number;
  durationMs: number;
  /** Damage found in this pass (also what earlier passes found again). */
  damage: ScrubFinding[];
}

export interface ScrubberOptions {
  /** Bytes verified per second; 0 turns the background scrub off (a pass can still be run). */
  bytesPerSecond: number;
  /** Pause between two passes. */
  passIntervalMs: number;
  /** Default: the native CRC32C. */
  crc32c?: Crc32cFunction;
  /** The broker's clock: pacing, the pause between passes, finding times. Default systemClock. */
  clock?: Clock;
}

const sliceBytesMin = 64 * 1024;
const sliceBytesMax = 8 * 1024 * 1024;

export class Scrubber {
  private readonly targets: () => ScrubTarget[];
  private readonly bytesPerSecond: number;
  private readonly passIntervalMs: number;
  private readonly crc32c: Crc32cFunction;
  private readonly clock: Clock;
  private readonly findings = new Map<string, ScrubFinding>();
  private readonly listeners: Array<(finding: ScrubFinding) => void> = [];
  private readonly counters = {
    passesCompleted: 0,
    bytesScrubbed: 0,
    batchesScrubbed: 0,
    segmentsScrubbed: 0,
    damageFound: 0,
  };
  private stopped = false;
  private wakeSleeper: (() => void) | null = null;
  private loop: Promise<void> | null = null;
  private pass: Promise<ScrubPassResult> | null = null;

  constructor(targets: () => ScrubTarget[], options: ScrubberOptions) {
    this.targets = targets;
    this.bytesPerSecond = options.bytesPerSecond;
    this.passIntervalMs = options.passIntervalMs;
    this.crc32c = options.crc32c ?? nativeCrc32c;
    this.clock = options.clock ?? systemClock;
  }

  /** Starts the background passes (nothing when the rate is 0). */
  start(): void {
    if (this.bytesPerSecond === 0 || this.loop !== null || this.stopped) return;
    this.loop = this.run();
  }

  /** Stops after the slice being verified; resolves when nothing runs any more. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.wakeSleeper?.();
    await this.loop;
    await this.pass?.catch(() => undefined);
  }

  /** Called with every new finding (the same damage found again by a later pass is not repeated). */
  onFinding(listener: (finding: ScrubFinding) => void): void {
    this.listeners.push(listener);
  }

  get stats(): ScrubStats {
    return {
      bytesPerSecond: this.bytesPerSecond,
      running: this.loop !== null && !this.stopped,
      ...this.counters,
      findings: [...this.findings.values()],
    };
  }

  /**
   * Runs one pass over every sealed segment at `bytesPerSecond` (default: the configured rate, or
   * unthrottled when that is 0; `Infinity` is unthrottled). Waits for a pass already running.
   * Aborting `signal` ends the pass after the slice being verified (it is then not counted complete).
   */
  async scrubPass(bytesPerSecond?: number, signal?: AbortSignal): Promise<ScrubPassResult> {
    while (this.pass !== null) await this.pass.catch(() => undefined);
    const rate = bytesPerSecond ?? (this.bytesPerSecond > 0 ? this.bytesPerSecond : Number.POSITIVE_INFINITY);
    if (!(rate > 0)) throw new Error(`scrub rate must be positive, got ${rate}`);
    this.pass = this.runPass(rate, signal);
    try {
      return await this.pass;
    } finally {
      this.pass = null;
    }
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      await this.scrubPass(this.bytesPerSecond);
      await this.sleep(this.passIntervalMs);
    }
  }

  private async runPass(rate: number, signal: AbortSignal | undefined): Promise<ScrubPassResult> {
    const startedAt = this.clock.monotonicMs();
    const onAbort = (): void => this.wakeSleeper?.();
    signal?.addEventListener('abort', onAbort);
    try {
      return await this.walk(rate, startedAt, () => this.stopped || signal?.aborted === true);
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  private async walk(rate: number, startedAt: number, cancelled: () => boolean): Promise<ScrubPassResult> {
    const result: ScrubPassResult = { bytes: 0, batches: 0, segments: 0, durationMs: 0, damage: [] };
    const sliceBytes = Number.isFinite(rate)
      ? Math.min(sliceBytesMax, Math.max(sliceBytesMin, Math.floor(rate / 20)))
      : sliceBytesMax;
    for (const target of this.targets()) {
      for (const segment of target.log.sealedSegments()) {
        const bytes = segment.bytes();
        let position = 0;
        let expected = segment.baseOffset;
        while (position < bytes.length && !cancelled()) {
          const step = verifyBatches(bytes, position, bytes.length, expected, sliceBytes, this.crc32c);
          result.bytes += step.bytes;
          result.batches += step.batches;
          this.counters.bytesScrubbed += step.bytes;
          this.counters.batchesScrubbed += step.batches;
          for (const damage of step.damage) {
            const stillSealed = target.log
              .sealedSegments()
              .some((current) => current.logPath === segment.logPath);
            if (!stillSealed) continue;
            const finding = this.record({
              topic: target.topic,
              partition: target.partition,
              file: segment.logPath,
              position: damage.position,
              baseOffset: damage.baseOffset,
              nextOffset: damage.nextOffset ?? segment.nextOffset,
              reason: damage.reason,
              foundAtMs: this.clock.nowMs(),
            });
            result.damage.push(finding);
          }
          // A scrub reads every page once: do not leave them counted in the broker's RSS.
          releaseQuietly(segment);
          if (step.stopped) break;
          position = step.position;
          expected = step.nextOffset;
          await this.pace(rate, result.bytes, startedAt, cancelled);
        }
        if (cancelled()) break;
        result.segments++;
        this.counters.segmentsScrubbed++;
      }
      if (cancelled()) break;
    }
    if (!cancelled()) this.counters.passesCompleted++;
    result.durationMs = this.clock.monotonicMs() - startedAt;
    return result;
  }

  /** Records a finding once (a later pass finding it again returns the first record). */
  private record(finding: ScrubFinding): ScrubFinding {
    const key = `${finding.file}:${finding.position}`;
    const known = this.findings.get(key);
    if (known !== undefined) return known;
    this.findings.set(key, finding);
    this.counters.damageFound++;
    if (this.findings.size > scrubFindingsMax) {
      const oldest = this.findings.keys().next().value;
      if (oldest !== undefined) this.findings.delete(oldest);
    }
    for (const listener of this.listeners) listener(finding);
    return finding;
  }

  /** Yields to the event loop, and sleeps while the pass is ahead of its rate. */
  private async pace(
    rate: number,
    bytes: number,
    startedAt: number,
    cancelled: () => boolean,
  ): Promise<void> {
    const aheadMs = Number.isFinite(rate)
      ? (bytes / rate) * 1000 - (this.clock.monotonicMs() - startedAt)
      : 0;
    if (aheadMs >= 1 && !cancelled()) await this.sleep(aheadMs);
    else await new Promise<void>((resolve) => setImmediate(resolve));
  }

  private sleep(ms: number): Promise<void> {
    if (this.stopped) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = this.clock.setTimeout(done, ms, { unref: true });
      const self = this;
      function done(): void {
        timer.cancel();
        if (self.wakeSleeper === done) self.wakeSleeper = null;
        resolve();
      }
      this.wakeSleeper = done;
    });
  }
}

/** Drops a scrubbed segment's pages from the resident set (only memory accounting: never fails a scrub). */
function releaseQuietly(segment: { releaseResidentPages: () => void }): void {
  try {
    segment.releaseResidentPages();
  } catch {
    // The map stays valid either way.
  }
}
