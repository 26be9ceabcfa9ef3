/**
 * The MemoryGuard's sweep policy (server/memory-guard.ts) on a ManualClock, against connections
 * that report figures set by the test (the real connections are exercised by the attack tests):
 * non-reading connections are closed only while the broker is over budget; over the soft memory line
 * silent connections are pinged, over the hard line those that did not answer are closed, and after
 * escalateAfterMs those that complete no message.
 */
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import {
  escalateAfterMs,
  type GuardedConnection,
  MemoryGuard,
  pingEveryMs,
  pollIntervalMs,
  pongGraceMs,
  reactionMarginBytes,
  recentMs,
  stalledUnsentBytesMin,
  sweepIntervalMs,
} from '../../src/server/memory-guard.js';

class FakeConnection implements GuardedConnection {
  unsentBytes = 0;
  inFlightCount = 0;
  drained = 0;
  lastMessageMs: number;
  lastHeardMs: number;
  pings = 0;
  closedWith: string | null = null;
  resumed = 0;
  takeDrainedBytes(): number {
    const drained = this.drained;
    this.drained = 0;
    return drained;
  }
  constructor(private readonly clock: ManualClock) {
    this.lastMessageMs = clock.monotonicMs();
    this.lastHeardMs = this.lastMessageMs;
  }
  message(): void {
    this.lastMessageMs = this.clock.monotonicMs();
    this.lastHeardMs = this.lastMessageMs;
  }
  pong(): void {
    this.lastHeardMs = this.clock.monotonicMs();
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
    const reader = new FakeConnection(clock);
    const stalled = new FakeConnection(clock);
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

  it('under memory pressure pings silent connections over the soft line and closes them over the hard line', () => {
    connections.clear();
    const clock = new ManualClock();
    const ceiling = 1024 * 1024 * 1024;
    let rss = 100;
    const guard = new MemoryGuard(
      1 << 30,
      ceiling,
      () => connections,
      clock,
      () => rss,
    );
    const margin = reactionMarginBytes(ceiling);
    expect(guard.hardLineBytes).toBe(ceiling - margin);
    expect(guard.softLineBytes).toBe(ceiling - 2 * margin);
    const talker = new FakeConnection(clock);
    const silent = new FakeConnection(clock);
    const answersPings = new FakeConnection(clock);
    connections.add(talker).add(silent).add(answersPings);
    guard.start();
    clock.advance(recentMs); // no pressure: nothing happens
    expect(silent.pings + answersPings.pings).toBe(0);
    expect(guard.checkPressure()).toBe(false);
    // Over the soft line: new connections refused, silent ones pinged.
    rss = guard.softLineBytes + 1;
    talker.message();
    clock.advance(pollIntervalMs);
    expect(guard.checkPressure()).toBe(true);
    expect(talker.pings).toBe(0);
    expect(silent.pings).toBe(1);
    expect(answersPings.pings).toBe(1);
    answersPings.pong();
    talker.message();
    expect(silent.closedWith).toBeNull(); // the soft line closes nobody
    // Over the hard line: the connection that answered neither ping nor anything is closed.
    rss = guard.hardLineBytes + 1;
    clock.advance(pollIntervalMs);
    expect(silent.closedWith).toMatch(/partial frame/);
    expect(answersPings.closedWith).toBeNull();
    expect(talker.closedWith).toBeNull();
    expect(guard.closedForSilence).toBe(1);
    // Still over it after escalateAfterMs: one that answers pings but completes no message is closed too.
    for (let waited = 0; waited <= escalateAfterMs; waited += pollIntervalMs) {
      answersPings.pong();
      talker.message();
      clock.advance(pollIntervalMs);
    }
    expect(answersPings.closedWith).toMatch(/partial message/);
    expect(talker.closedWith).toBeNull();
    expect(guard.closedForSilence).toBe(2);
    expect(guard.peakRssBytes).toBe(guard.hardLineBytes + 1);
    guard.stop();
  });

  it('over the hard line spares a silent connection waiting for an answer until escalateAfterMs', () => {
    connections.clear();
    const clock = new ManualClock();
    let rss = 0;
    const guard = new MemoryGuard(
      1 << 30,
      1024 * 1024 * 1024,
      () => connections,
      clock,
      () => rss,
    );
    const idle = new FakeConnection(clock);
    const waiting = new FakeConnection(clock);
    waiting.inFlightCount = 1;
    connections.add(idle).add(waiting);
    clock.advance(recentMs);
    rss = guard.hardLineBytes + 1;
    guard.poll();
    expect(idle.closedWith).toMatch(/partial frame/);
    expect(waiting.closedWith).toBeNull();
    clock.advance(escalateAfterMs);
    guard.poll();
    expect(waiting.closedWith).toMatch(/partial frame/);
    expect(guard.closedForSilence).toBe(2);
  });

  it('over the hard line closes connections heard moments ago that leave a ping unanswered', () => {
    connections.clear();
    const clock = new ManualClock();
    let rss = 0;
    const guard = new MemoryGuard(
      1 << 30,
      1024 * 1024 * 1024,
      () => connections,
      clock,
      () => rss,
    );
    // Both said HELLO just now, then one starts a frame it never finishes: memory jumps at once.
    const inFrame = new FakeConnection(clock);
    const healthy = new FakeConnection(clock);
    connections.add(inFrame).add(healthy);
    clock.advance(pingEveryMs);
    rss = guard.hardLineBytes + 1;
    guard.poll();
    expect(inFrame.pings).toBe(1);
    expect(healthy.pings).toBe(1);
    expect(inFrame.closedWith).toBeNull(); // heard pingEveryMs ago: pinged, not closed yet
    healthy.pong();
    clock.advance(pongGraceMs - 1);
    guard.poll();
    expect(inFrame.closedWith).toBeNull();
    expect(inFrame.pings).toBe(1); // one ping at a time
    clock.advance(1);
    guard.poll();
    expect(inFrame.closedWith).toMatch(/no answer to a ping/);
    expect(healthy.closedWith).toBeNull();
    expect(guard.closedForSilence).toBe(1);
  });
});
