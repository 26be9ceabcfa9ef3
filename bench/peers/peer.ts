/**
 * A peer broker driven by the 'peers' bench suite, and the workload every peer runs. Spillway runs the
 * same workload through the same interface, so the rows compare like with like.
 *
 * The workload, for every implementation:
 * - `produce`: writes `messages` payloads of `messageBytes` into a NEW, empty stream or queue (the
 *   previous one is deleted, so disk use stays bounded), from `producers` connections, each keeping a
 *   window of publishes in flight and awaiting every acknowledgement (a publish counts only once the
 *   broker acknowledged it at the peer's durability setting). Stops issuing at `durationMsMax`.
 * - `consume`: reads back from the beginning what the last `produce` acknowledged, with `consumers`
 *   competing consumers of one durable subscription (consumer group, durable pull consumer, queue),
 *   fetching in batches and acknowledging each batch; the broker keeps the position.
 * - `endToEndLatency`: a producer and a live consumer on separate connections; messages published at a
 *   fixed rate well below capacity; latency = consumer receipt − publish call, in the same process
 *   (one clock), after a warm-up.
 * Payloads come from a fixed-seed pool (see payload.ts): the same bytes for every peer and every run.
 *
 * Lifecycle: `start` once, then any number of measurements one at a time (not concurrently), then
 * `stop`. `stop` is safe to call after a failed or partial `start`, and more than once.
 */
export interface Peer {
  /** Stable, used in row names: 'nats-jetstream file (sync default)'. */
  readonly name: string;
  /** What an acknowledgement guarantees at this setting, stated plainly (goes into every row). */
  readonly durability: string;
  /** The server's version once started ('nats-server v2.9.10'), for the report. */
  readonly version: string | undefined;
  /** Starts a private server on 127.0.0.1 (non-default ports) with its data and log under `scratchDir`. Throws PeerUnavailableError when it cannot run here. */
  start(scratchDir: string): Promise<void>;
  /** Stops the server by PID (SIGTERM, SIGKILL after a timeout) and closes the clients. */
  stop(): Promise<void>;
  produce(options: ProduceOptions): Promise<ProduceResult>;
  consume(options: ConsumeOptions): Promise<ConsumeResult>;
  endToEndLatency(options: LatencyOptions): Promise<LatencyResult>;
}

export interface ProduceOptions {
  messages: number;
  messageBytes: number;
  producers: number;
  /** Stop issuing publishes past this; what was acknowledged by then counts. */
  durationMsMax: number;
}

export interface ProduceResult {
  /** Acknowledged messages per second, first publish to last acknowledgement. */
  messagesPerSecond: number;
  /** Payload bytes (not protocol bytes) per second. */
  bytesPerSecond: number;
  /** Messages the broker acknowledged. */
  acked: number;
  elapsedMs: number;
}

export interface ConsumeOptions {
  /** How many of the messages the last `produce` acknowledged to read back; at most that many. */
  messages: number;
  consumers: number;
  durationMsMax: number;
  /**
   * 'batch' (default): the peer's usual group read, acknowledging a batch at a time where it can
   * (cumulative acks). 'each': queue mode, every message acknowledged on its own (no cumulative ack,
   * no ack of a range in one call): the compare suite's 'queue' scenario. `received` then counts
   * messages acknowledged, and the clock stops once the last ack was sent (and confirmed, where the
   * protocol confirms acks).
   */
  ack?: 'batch' | 'each';
}

export interface ConsumeResult {
  messagesPerSecond: number;
  bytesPerSecond: number;
  received: number;
  elapsedMs: number;
}

export interface LatencyOptions {
  ratePerSecond: number;
  durationMs: number;
  messageBytes: number;
}

export interface LatencyResult {
  p50Us: number;
  p99Us: number;
  p999Us: number;
  maxUs: number;
  /** Messages measured (sent after the warm-up and received). */
  measured: number;
  /** Sent but not received before the drain timeout. */
  lost: number;
  /** How far the publisher fell behind its schedule at worst: a large value means the rate was too high to be open-loop. */
  producerLagMaxMs: number;
  /** Warm-up round trips made before the clock started (`latencyWarmUpMs`). */
  warmUpRoundTrips: number;
}

/** The peer cannot run on this machine (not installed, unsupported setting, fails to start). The reason is reported, never hidden. */
export class PeerUnavailableError extends Error {
  override readonly name = 'PeerUnavailableError';
}
