/**
 * FaultyLog: a LogStore wrapped around any other (PartitionLog, MemoryLog) that injects the storage
 * faults a broker must survive, for tests of the layers above storage: a full disk (ENOSPC ->
 * StorageFullError, STORAGE_FULL), an I/O error (EIO -> StorageIoError, STORAGE_IO), and slow
 * writes or syncs. Without injected faults it answers exactly as the log it wraps.
 *
 * Fault points, each counting its own calls:
 *  - 'append': the append fails before reaching the wrapped log (nothing written), as a failed
 *    preallocation or write does.
 *  - 'sync': the append reaches the wrapped log (its data is there and readable), then its
 *    acknowledgement fails, as a failed fdatasync does; `durableOffset` stays below that batch until
 *    `heal()`. PartitionLog also refuses every later append after a failed sync; FaultyLog does not
 *    model that (add an 'append' fault for it).
 *  - 'flush', 'retention': `flush` rejects, `applyRetention` and `deleteBelow` throw (a failed
 *    unlink; nothing is deleted).
 * `fail(point, fault, { after, times })` lets `after` calls through, then fails `times` calls (one by
 * default, `Infinity`: every call until `heal()`); a later `fail` at the same point replaces it.
 *
 * Delays run on the injected clock (a ManualClock makes them deterministic):
 *  - 'append': the call reaches the wrapped log `ms` later (offsets are assigned then; equal delays
 *    keep call order).
 *  - 'sync': the call reaches the wrapped log at once, its acknowledgement comes `ms` later, and
 *    `durableOffset` stays below the batch until then (with durability `always` the broker shows it
 *    to no consumer before).
 * `close` answers the acknowledgements still held at once (as a real close syncs), ends the delay of
 * appends still waiting (they reach the wrapped log as it closes, which may refuse them: LOG_CLOSED)
 * and closes the wrapped log.
 *
 * Single-threaded like the logs it wraps.
 */
import { type Clock, type ClockTimer, systemClock } from '../clock.js';
import { InvalidArgumentError, type SpillwayError, storageErrorFrom } from '../errors.js';
import type { RecoveryReport } from './log-loader.js';
import type {
  AppendResult,
  LogFactory,
  LogOpenRequest,
  LogStore,
  ReadResult,
  RetentionResult,
} from './log-store.js';

export type InjectedFault = 'ENOSPC' | 'EIO';
export type FaultPoint = 'append' | 'sync' | 'flush' | 'retention';
export type DelayPoint = 'append' | 'sync';

export interface FaultSchedule {
  /** Calls at this point to let through before failing. Default 0: the next one fails. */
  after?: number;
  /** Calls that fail from then on. Default 1; `Infinity`: every call until `heal()`. */
  times?: number;
}

interface FaultRule {
  fault: InjectedFault;
  skip: number;
  remaining: number;
}

/** An append whose acknowledgement is held back (slow sync). */
interface HeldAck {
  baseOffset: number;
  /** Resolves when the (slow) sync completes. */
  done: Promise<void>;
  timer: ClockTimer | null;
  /** Ends the hold: no longer below `durableOffset`, `done` resolved. */
  release: () => void;
}

const syscallOf: Readonly<Record<FaultPoint, string>> = {
  append: 'write',
  sync: 'fdatasync',
  flush: 'fdatasync',
  retention: 'unlink',
};

const messageOf: Readonly<Record<InjectedFault, string>> = {
  ENOSPC: 'no space left on device',
  EIO: 'i/o error',
};

function nonNegativeInteger(name: string, value: number): number {
  if (!(Number.isSafeInteger(value) && value >= 0) && value !== Number.POSITIVE_INFINITY) {
    throw new InvalidArgumentError(`${name} must be an integer >= 0 or Infinity, got ${value}`);
  }
  return value;
}

export class FaultyLog implements LogStore {
  readonly inner: LogStore;
  private readonly clock: Clock;
  private readonly rules = new Map<FaultPoint, FaultRule>();
  private readonly delays = new Map<DelayPoint, number>();
  private readonly held = new Set<HeldAck>();
  /** Ends the delay of an append still waiting to reach the wrapped log. */
  private readonly delayedAppends = new Set<() => void>();
  /** Base offset of the first batch whose injected sync failure holds `durableOffset` back, or null. */
  private failedSyncOffset: number | null = null;
  private injected = 0;

  constructor(inner: LogStore, clock: Clock = systemClock) {
    this.inner = inner;
    this.clock = clock;
  }

  /** Fails calls at `point` with `fault` on the schedule given (see the header). */
  fail(point: FaultPoint, fault: InjectedFault, schedule: FaultSchedule = {}): void {
    const skip = nonNegativeInteger('after', schedule.after ?? 0);
    const remaining = nonNegativeInteger('times', schedule.times ?? 1);
    if (remaining === 0) this.rules.delete(point);
    else this.rules.set(point, { fault, skip, remaining });
  }

  /** Delays every later call at `point` by `ms` on the clock (0 removes the delay). */
  delay(point: DelayPoint, ms: number): void {
    nonNegativeInteger('delay', ms);
    if (ms === 0) this.delays.delete(point);
    else this.delays.set(point, ms);
  }

  /** Removes every fault and delay still scheduled; held acknowledgements keep their timers. */
  heal(): void {
    this.rules.clear();
    this.delays.clear();
    this.failedSyncOffset = null;
  }

  /** Faults injected so far. */
  get injectedCount(): number {
    return this.injected;
  }

  /** Appends whose acknowledgement is held back (by a sync delay or failure) right now. */
  get heldAckCount(): number {
    return this.held.size;
  }

  get logStartOffset(): number {
    return this.inner.logStartOffset;
  }

  get logEndOffset(): number {
    return this.inner.logEndOffset;
  }

  get durableOffset(): number {
    let offset = this.inner.durableOffset;
    if (this.failedSyncOffset !== null) offset = Math.min(offset, this.failedSyncOffset);
    for (const ack of this.held) offset = Math.min(offset, ack.baseOffset);
    return offset;
  }

  get sizeBytes(): number {
    return this.inner.sizeBytes;
  }

  get segmentCount(): number {
    return this.inner.segmentCount;
  }

  get recovery(): RecoveryReport {
    return this.inner.recovery;
  }

  append(batch: Uint8Array): Promise<AppendResult> {
    const fault = this.take('append');
    if (fault !== null) return Promise.reject(fault);
    const delayMs = this.delays.get('append') ?? 0;
    if (delayMs === 0) return this.appendInner(batch);
    const held = batch.slice(); // appended later: the caller's batch may be reused once we return
    return new Promise<void>((resolve) => {
      const timer = this.clock.setTimeout(() => {
        this.delayedAppends.delete(release);
        resolve();
      }, delayMs);
      const release = (): void => {
        this.clock.clearTimer(timer);
        resolve();
      };
      this.delayedAppends.add(release);
    }).then(() => this.appendInner(held));
  }

  private appendInner(batch: Uint8Array): Promise<AppendResult> {
    const syncFault = this.take('sync');
    const delayMs = this.delays.get('sync') ?? 0;
    if (syncFault === null && delayMs === 0) return this.inner.append(batch);
    // Offsets are assigned in call order, synchronously: the batch will start at the log end.
    const ack = this.holdAck(this.inner.logEndOffset, delayMs);
    return this.inner.append(batch).then(
      async (result) => {
        await ack.done;
        if (syncFault !== null) {
          this.failedSyncOffset = Math.min(this.failedSyncOffset ?? result.baseOffset, result.baseOffset);
        }
        ack.release();
        if (syncFault !== null) throw syncFault;
        return result;
      },
      (error: unknown) => {
        ack.release();
        throw error;
      },
    );
  }

  /**
   * Holds `durableOffset` below `baseOffset` until released; `done` resolves `delayMs` later on the
   * clock (at once for 0), or at release.
   */
  private holdAck(baseOffset: number, delayMs: number): HeldAck {
    let resolveDone: () => void = () => undefined;
    const done = new Promise<void>((resolve) => {
      resolveDone = resolve;
    });
    const ack: HeldAck = {
      baseOffset,
      done,
      timer: null,
      release: () => {
        this.clock.clearTimer(ack.timer);
        this.held.delete(ack);
        resolveDone();
      },
    };
    if (delayMs > 0) ack.timer = this.clock.setTimeout(resolveDone, delayMs);
    else resolveDone();
    this.held.add(ack);
    return ack;
  }

  read(offset: number, maxBytes: number, maxOffset?: number): ReadResult {
    return this.inner.read(offset, maxBytes, maxOffset);
  }

  offsetForTime(timestamp: number): number | null {
    return this.inner.offsetForTime(timestamp);
  }

  truncateTo(offset: number): void {
    this.inner.truncateTo(offset);
  }

  applyRetention(nowMs: number): RetentionResult {
    const fault = this.take('retention');
    if (fault !== null) throw fault;
    return this.inner.applyRetention(nowMs);
  }

  deleteBelow(offset: number): RetentionResult {
    const fault = this.take('retention');
    if (fault !== null) throw fault;
    return this.inner.deleteBelow(offset);
  }

  flush(): Promise<void> {
    const fault = this.take('flush');
    if (fault !== null) return Promise.reject(fault);
    return this.inner.flush();
  }

  async close(): Promise<void> {
    for (const ack of [...this.held]) ack.release();
    for (const release of [...this.delayedAppends]) release();
    this.delayedAppends.clear();
    await this.inner.close();
  }

  /** The typed error of the fault due at this call of `point`, or null (counting the call). */
  private take(point: FaultPoint): SpillwayError | null {
    const rule = this.rules.get(point);
    if (rule === undefined) return null;
    if (rule.skip > 0) {
      rule.skip--;
      return null;
    }
    rule.remaining--;
    if (rule.remaining <= 0) this.rules.delete(point);
    this.injected++;
    const syscall = syscallOf[point];
    const error: NodeJS.ErrnoException = new Error(`${rule.fault}: ${messageOf[rule.fault]}, ${syscall}`);
    error.code = rule.fault;
    error.syscall = syscall;
    // The conversion the real log applies to a system error (StorageFullError / StorageIoError).
    return storageErrorFrom(`${point} (injected fault)`, error);
  }
}

/**
 * A LogFactory wrapping every log that `inner` opens in a FaultyLog on the request's clock, kept by
 * topic and partition so that a test can reach the log of one partition (`log(topic, partition)`).
 */
export class FaultyLogFactory {
  private readonly logs = new Map<string, FaultyLog>();
  private readonly inner: LogFactory;

  constructor(inner: LogFactory) {
    this.inner = inner;
  }

  /** The factory to hand to `BrokerOptions.logFactory`. */
  readonly open: LogFactory = async (request: LogOpenRequest) => {
    const log = new FaultyLog(await this.inner(request), request.clock);
    this.logs.set(`${request.topic}/${request.partition}`, log);
    return log;
  };

  /** The FaultyLog last opened for that partition; InvalidArgumentError when none was. */
  log(topic: string, partition: number): FaultyLog {
    const log = this.logs.get(`${topic}/${partition}`);
    if (log === undefined) throw new InvalidArgumentError(`no log was opened for ${topic}/${partition}`);
    return log;
  }
}
