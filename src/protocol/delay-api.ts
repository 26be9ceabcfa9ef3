/**
 * Delayed messages as the protocol layer sees them (docs/PROTOCOL.md, "Delayed messages"): a batch
 * with the `delayed` attribute is produced like any other and answered once stored; what the network
 * asks of the delay service itself is its figures (DELAY_STATS, `spillway delay stats`, /metrics).
 */

/** Pending delayed messages and what the service did since the broker opened. */
export interface DelayStats {
  /** Messages waiting (scheduled, not fired yet), due ones not yet fired included. */
  pending: number;
  /** Of those, due in less than a minute from now (or overdue). */
  withinMinute: number;
  /** Due in a minute to an hour. */
  withinHour: number;
  /** Due in an hour to a day. */
  withinDay: number;
  /** Due a day or more ahead. */
  later: number;
  /** Earliest due time pending (epoch ms), null when nothing is. */
  nextDueMs: number | null;
  /** Since the broker opened: messages scheduled, fired into their topic, sent to `__delay_dead`. */
  scheduled: number;
  fired: number;
  deadLettered: number;
  /** Firing lateness (append acknowledged minus due time) over the last fired messages, ms. */
  lateness: { samples: number; p50Ms: number; p99Ms: number; maxMs: number };
  /** Bytes of the timing wheel's entry arrays, and of the `__delay` log. */
  wheelBytes: number;
  delayLogBytes: number;
}

export interface DelayService {
  stats(): DelayStats;
}
