/**
 * The MemoryGuard's sweep policy (server/memory-guard.ts) on a ManualClock, against connections
 * that report figures set by the test (the real connections are exercised by the attack tests):
 * non-reading connections are closed only while the broker is over budget; under memory pressure
 * silent connections are pinged first and closed only if still silent at the next sweep.
 */
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import {
  type GuardedConnection,
  MemoryGuard,
  stalledUnsentBytesMin,
  sweepIntervalMs,
} from '../../src/server/memory-guard.js';

class FakeConnection implements GuardedConnection {
  unsentBytes = 0;
  drained = 0;
  heard = false;
  pings = 0;
  closedWith: string | null = null;
  resumed = 0;
  takeDrainedBytes(): number {
    const drained = this.drained;
    this.drained = 0;
    return drained;
  }
  takeHeardFrom(): boolean {
    const heard = this.heard;
    this.heard = false;
    return heard;
  }
  ping(): void {
    this.pings++;
  }
  endForMemory(reason: string): void {
    this.closedWith = reason;
    connections.delete(this);
  }
  resumeHeld(): void {
    this.resumed++;
  }
}

const connections = new Set<FakeConnection>();

describe('MemoryGuard', () => {
  it('closes connections that do not read only while over budget', () => {
    connections.clear();
    const clock = new ManualClock();
    const rss = 0;
    const guard = new MemoryGuard(
      10 * stalledUnsentBytesMin,
      1 << 30,
      () => connections,
      clock,
      () => rss,
    );
    const reader = new FakeConnection();
    const stalled = new FakeConnection();
    connections.add(reader).add(stalled);
    reader.unsentBytes = 8 * stalledUnsentBytesMin;
    stalled.unsentBytes = 8 * stalledUnsentBytesMin;
    guard.unsentBytes = 16 * stalledUnsentBytesMin;
    guard.start();
    reader.drained = 1;
    clock.advance(sweepIntervalMs);
    expect(reader.closedWith).toBeNull();
    expect(stalled.closedWith).toMatch(/memory budget/);
    expect(guard.closedForUnread).toBe(1);
    // Under budget: nobody is closed for not reading, held requests resume.
    guard.unsentBytes = 0;
    clock.advance(sweepIntervalMs);
    expect(reader.closedWith).toBeNull();
    expect(reader.resumed).toBeGreaterThan(0);
    guard.stop();
  });

  it('under memory pressure pings silent connections, then closes those still silent', () => {
    connections.clear();
    const clock = new ManualClock();
    let rss = 100;
    const guard = new MemoryGuard(
      1 << 30,
      1000,
      () => connections,
      clock,
      () => rss,
    );
    const talker = new FakeConnection();
    const silent = new FakeConnection();
    const answersPings = new FakeConnection();
    connections.add(talker).add(silent).add(answersPings);
    guard.start();
    clock.advance(sweepIntervalMs); // no pressure: nothing happens
    expect(silent.pings + answersPings.pings).toBe(0);
    rss = 2000;
    talker.heard = true;
    clock.advance(sweepIntervalMs);
    expect(guard.underPressure).toBe(true);
    expect(talker.pings).toBe(0);
    expect(silent.pings).toBe(1);
    expect(answersPings.pings).toBe(1);
    talker.heard = true;
    answersPings.heard = true; // its pong
    clock.advance(sweepIntervalMs);
    expect(silent.closedWith).toMatch(/partial frame/);
    expect(answersPings.closedWith).toBeNull();
    expect(talker.closedWith).toBeNull();
    expect(guard.closedForSilence).toBe(1);
    guard.stop();
  });
});
