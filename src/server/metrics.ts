/**
 * Server metrics, rendered in the Prometheus text exposition format (version 0.0.4) by GET /metrics.
 *
 * Counting happens on the request hot path, so it is plain numbers and two-level maps keyed by
 * already-existing strings (no allocation per request); the text is built only when scraped. The
 * per-partition gauges are read from the broker (listTopics) at scrape time. Written by hand rather
 * than with prom-client: a dozen series do not need a registry, and prom-client's label hashing
 * would sit on every request.
 */

import { metricsLagSeriesMax } from '../limits.js';
import type { DedupStats, IntegrityReport, StorageStats, TopicDescription } from '../protocol/broker-api.js';
import type { DelayStats } from '../protocol/delay-api.js';
import type { GroupDescription } from '../protocol/group-api.js';
import { opcodeName } from '../protocol/opcodes.js';
import type { QueueGroupDescription } from '../protocol/queue-api.js';
import type { ReplicaPartitionStats } from '../protocol/replication-api.js';
import type { SessionKind, SessionService } from '../protocol/session.js';
import type { TransactionStats } from '../protocol/transaction-api.js';
import { inlineSyncBudget, inlineSyncSlowMs } from '../storage/inline-sync.js';
import type { Authenticator } from './auth/authenticator.js';
import type { PrincipalQuotaTracker } from './auth/principal-quotas.js';
import type { HttpBudget } from './http-budget.js';
import type { MemoryGuard } from './memory-guard.js';

/** Result label of a request answered without error. */
export const okResult = 'OK';
/** Opcode label of a frame that could not be decoded (or a text frame). */
export const invalidFrameOpcode = 'invalid_frame';

type CounterTable = Map<string, Map<string, number>>;

function increment(table: CounterTable, first: string, second: string, by = 1): void {
  let inner = table.get(first);
  if (inner === undefined) {
    inner = new Map();
    table.set(first, inner);
  }
  inner.set(second, (inner.get(second) ?? 0) + by);
}

/** Escapes a label value: backslash, double quote and line feed (exposition format rules). */
export function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

export class ServerMetrics {
  /** WebSocket connections open now. */
  connectionsOpen = 0;
  connectionsAccepted = 0;
  /** Upgrades refused: over the connection limit, or the server closing. */
  connectionsRejected = 0;
  /** HTTP requests and WebSocket upgrades refused by the Origin or Host check (request-guard.ts). */
  requestsRefusedByGuard = 0;
  /** WebSocket connections closed because they sent no HELLO within the handshake timeout. */
  connectionsClosedForHandshakeTimeout = 0;
  /** The HTTP receive and send budgets (set by the server; read when rendering). */
  httpBudget: HttpBudget | null = null;
  /** The WebSocket memory budget (set by the server). */
  memory: MemoryGuard | null = null;
  /** Authentication and quotas (set by the server when it runs with an auth file). */
  security: { authenticator: Authenticator; quotas: PrincipalQuotaTracker } | null = null;
  /** Connections the server closed because their send buffer passed sendBufferBytesHardMax. */
  connectionsClosedForBackpressure = 0;
  /** FETCH requests held because their connection's send buffer was over sendBufferBytesMax. */
  fetchesHeld = 0;
  /** Answers held (not yet given to the socket) for the same reason. */
  answersHeld = 0;
  /** Server requests sent to WebSocket clients. */
  serverRequestsSent = 0;
  /** Client answers to server requests handed to their session. */
  serverRequestAnswers = 0;
  /** Client answers to server requests nobody waited for (timed out, or an unknown correlation id): dropped. */
  serverRequestAnswersDropped = 0;
  readonly bytesReceived = { ws: 0, http: 0 };
  readonly bytesSent = { ws: 0, http: 0 };
  /** opcode name -> result code -> count. */
  private readonly requests: CounterTable = new Map();
  /** route -> status -> count. */
  private readonly httpRequests: CounterTable = new Map();

  countRequest(opcode: number | typeof invalidFrameOpcode, result: string): void {
    const name = typeof opcode === 'string' ? opcode : (opcodeName(opcode) ?? 'unknown');
    increment(this.requests, name, result);
  }

  countHttpRequest(route: string, status: number): void {
    increment(this.httpRequests, route, String(status));
  }

  /**
   * The exposition text. `topics` gives the per-partition gauges (omitted when it throws); `sessions`
   * the session gauges; `integrity` the damage and repair gauges; `storage` the disk and scrub figures.
   */
  render(
    topics: () => TopicDescription[],
    sendBuffers: () => number[] = () => [],
    sessions?: SessionService,
    integrity: () => IntegrityReport | null = () => null,
    storage: () => StorageStats | null = () => null,
    groups: () => GroupDescription[] = () => [],
    queues: () => QueueGroupDescription[] = () => [],
    transactions: () => TransactionStats | null = () => null,
    delay: () => DelayStats | null = () => null,
    dedup: () => DedupStats | null = () => null,
    replication: () => ReplicaPartitionStats[] | null = () => null,
  ): string {
    const lines: string[] = [];
    const metric = (name: string, type: 'counter' | 'gauge', help: string): void => {
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    };
    metric('spillway_connections', 'gauge', 'WebSocket connections open.');
    lines.push(`spillway_connections ${this.connectionsOpen}`);
    metric('spillway_connections_accepted_total', 'counter', 'WebSocket connections accepted.');
    lines.push(`spillway_connections_accepted_total ${this.connectionsAccepted}`);
    metric(
      'spillway_connections_rejected_total',
      'counter',
      'WebSocket upgrades refused (connection limit reached or server closing).',
    );
    lines.push(`spillway_connections_rejected_total ${this.connectionsRejected}`);
    metric(
      'spillway_requests_refused_by_origin_check_total',
      'counter',
      'HTTP requests and WebSocket upgrades refused because of their Origin or Host header.',
    );
    lines.push(`spillway_requests_refused_by_origin_check_total ${this.requestsRefusedByGuard}`);
    metric(
      'spillway_connections_closed_for_handshake_timeout_total',
      'counter',
      'WebSocket connections closed because they sent no HELLO in time.',
    );
    lines.push(
      `spillway_connections_closed_for_handshake_timeout_total ${this.connectionsClosedForHandshakeTimeout}`,
    );
    const budget = this.httpBudget;
    metric('spillway_http_body_bytes', 'gauge', 'Bytes of HTTP request bodies received and held now.');
    lines.push(`spillway_http_body_bytes ${budget?.receivingBytes ?? 0}`);
    metric('spillway_http_unsent_bytes', 'gauge', 'Bytes of HTTP answers waiting for slow readers now.');
    lines.push(`spillway_http_unsent_bytes ${budget?.sendingBytes ?? 0}`);
    metric(
      'spillway_http_budget_refusals_total',
      'counter',
      'HTTP requests refused because a memory budget was spent or a body arrived too slowly.',
    );
    lines.push(`spillway_http_budget_refusals_total ${budget?.refusals ?? 0}`);
    metric(
      'spillway_connections_closed_for_backpressure_total',
      'counter',
      'Connections closed because the client did not read its answers.',
    );
    lines.push(`spillway_connections_closed_for_backpressure_total ${this.connectionsClosedForBackpressure}`);
    metric(
      'spillway_backpressure_held_total',
      'counter',
      'Fetch requests and answers held until a slow client read its send buffer down.',
    );
    lines.push(`spillway_backpressure_held_total{kind="fetch"} ${this.fetchesHeld}`);
    lines.push(`spillway_backpressure_held_total{kind="answer"} ${this.answersHeld}`);
    const memory = this.memory;
    metric(
      'spillway_unsent_bytes',
      'gauge',
      'Unsent WebSocket answer bytes, all connections (memory budget).',
    );
    lines.push(`spillway_unsent_bytes ${memory?.unsentBytes ?? 0}`);
    metric('spillway_memory_budget_bytes', 'gauge', 'Memory budget of unsent WebSocket answer bytes.');
    lines.push(`spillway_memory_budget_bytes ${memory?.budgetBytes ?? 0}`);
    metric(
      'spillway_anonymous_rss_bytes',
      'gauge',
      'Anonymous resident memory at the last read (every 10 ms).',
    );
    lines.push(`spillway_anonymous_rss_bytes ${memory?.lastRssBytes ?? 0}`);
    metric(
      'spillway_memory_guard_total',
      'counter',
      'Memory guard actions: requests held over budget, connections closed (unread answers, silent under pressure).',
    );
    lines.push(`spillway_memory_guard_total{action="held"} ${memory?.requestsHeld ?? 0}`);
    lines.push(`spillway_memory_guard_total{action="closed_unread"} ${memory?.closedForUnread ?? 0}`);
    lines.push(`spillway_memory_guard_total{action="closed_silent"} ${memory?.closedForSilence ?? 0}`);
    const security = this.security;
    if (security !== null) {
      const { authenticator, quotas } = security;
      metric(
        'spillway_auth_failures_total',
        'counter',
        'Failed authentication attempts (bad or missing token).',
      );
      lines.push(`spillway_auth_failures_total ${authenticator.failures}`);
      metric(
        'spillway_auth_throttled_total',
        'counter',
        'Authentication attempts refused unchecked (too many failures from the address, or checks at once).',
      );
      lines.push(`spillway_auth_throttled_total ${authenticator.throttled}`);
      metric('spillway_auth_checks_total', 'counter', 'Token checks that ran scrypt (not remembered).');
      lines.push(`spillway_auth_checks_total ${authenticator.checks}`);
      const usages = quotas.usage().map(([name, usage]) => [escapeLabelValue(name), usage] as const);
      metric('spillway_quota_bytes_total', 'counter', 'Bytes produced and fetched, by principal.');
      for (const [principal, usage] of usages) {
        for (const kind of ['produce', 'fetch'] as const) {
          lines.push(
            `spillway_quota_bytes_total{principal="${principal}",kind="${kind}"} ${usage.bytes[kind]}`,
          );
        }
      }
      metric(
        'spillway_quota_throttle_seconds_total',
        'counter',
        'Time answers were held back for byte quotas, by principal.',
      );
      for (const [principal, usage] of usages) {
        for (const kind of ['produce', 'fetch'] as const) {
          lines.push(
            `spillway_quota_throttle_seconds_total{principal="${principal}",kind="${kind}"} ${usage.throttleMs[kind] / 1000}`,
          );
        }
      }
      metric('spillway_principal_connections', 'gauge', 'WebSocket connections of each principal.');
      for (const [principal, usage] of usages) {
        lines.push(`spillway_principal_connections{principal="${principal}"} ${usage.connections}`);
      }
      metric(
        'spillway_principal_connections_refused_total',
        'counter',
        'HELLOs refused because the principal held maxConnections.',
      );
      for (const [principal, usage] of usages) {
        lines.push(
          `spillway_principal_connections_refused_total{principal="${principal}"} ${usage.connectionsRefused}`,
        );
      }
    }
    const buffered = sendBuffers();
    metric(
      'spillway_send_buffer_bytes',
      'gauge',
      'Bytes waiting in WebSocket send buffers, all connections.',
    );
    lines.push(`spillway_send_buffer_bytes ${buffered.reduce((sum, bytes) => sum + bytes, 0)}`);
    metric('spillway_send_buffer_bytes_max', 'gauge', 'Largest send buffer of one connection now.');
    lines.push(`spillway_send_buffer_bytes_max ${buffered.reduce((max, bytes) => Math.max(max, bytes), 0)}`);
    metric(
      'spillway_requests_total',
      'counter',
      'WebSocket protocol requests answered, by opcode and result (OK or an error code).',
    );
    for (const [opcode, results] of this.requests) {
      for (const [result, count] of results) {
        lines.push(
          `spillway_requests_total{opcode="${escapeLabelValue(opcode)}",code="${escapeLabelValue(result)}"} ${count}`,
        );
      }
    }
    metric('spillway_http_requests_total', 'counter', 'HTTP requests answered, by route and status.');
    for (const [route, statuses] of this.httpRequests) {
      for (const [status, count] of statuses) {
        lines.push(
          `spillway_http_requests_total{route="${escapeLabelValue(route)}",status="${status}"} ${count}`,
        );
      }
    }
    if (sessions !== undefined) {
      const byKind: Record<SessionKind, number> = { websocket: 0, 'in-process': 0, http: 0 };
      for (const session of sessions.list()) byKind[session.kind]++;
      metric('spillway_sessions', 'gauge', 'Sessions open, by kind (one per connection or HTTP request).');
      for (const [kind, count] of Object.entries(byKind)) {
        lines.push(`spillway_sessions{kind="${kind}"} ${count}`);
      }
      metric(
        'spillway_session_close_hook_failures_total',
        'counter',
        'Session close hooks that threw, rejected or did not finish in time.',
      );
      lines.push(`spillway_session_close_hook_failures_total ${sessions.closeHookFailureCount}`);
    }
    metric('spillway_server_requests_total', 'counter', 'Server requests sent to WebSocket clients.');
    lines.push(`spillway_server_requests_total ${this.serverRequestsSent}`);
    metric(
      'spillway_server_request_answers_total',
      'counter',
      'Client answers to server requests: handed to their session, or dropped (nobody waited).',
    );
    lines.push(`spillway_server_request_answers_total{result="delivered"} ${this.serverRequestAnswers}`);
    lines.push(`spillway_server_request_answers_total{result="dropped"} ${this.serverRequestAnswersDropped}`);
    metric('spillway_received_bytes_total', 'counter', 'Bytes received (WebSocket messages, HTTP bodies).');
    lines.push(`spillway_received_bytes_total{transport="ws"} ${this.bytesReceived.ws}`);
    lines.push(`spillway_received_bytes_total{transport="http"} ${this.bytesReceived.http}`);
    metric('spillway_sent_bytes_total', 'counter', 'Bytes sent (WebSocket messages, HTTP bodies).');
    lines.push(`spillway_sent_bytes_total{transport="ws"} ${this.bytesSent.ws}`);
    lines.push(`spillway_sent_bytes_total{transport="http"} ${this.bytesSent.http}`);
    // The process's inline fdatasync budget (storage/inline-sync.ts): one per process, shared by every log.
    metric(
      'spillway_inline_fdatasync_total',
      'counter',
      `Group-commit fdatasync calls run on the event loop (lightly loaded always logs), and how many were slow (over ${inlineSyncSlowMs} ms).`,
    );
    lines.push(`spillway_inline_fdatasync_total{result="all"} ${inlineSyncBudget.calls}`);
    lines.push(`spillway_inline_fdatasync_total{result="slow"} ${inlineSyncBudget.slowCalls}`);
    metric(
      'spillway_inline_fdatasync_seconds_total',
      'counter',
      'Time the event loop spent in inline fdatasync calls.',
    );
    lines.push(`spillway_inline_fdatasync_seconds_total ${inlineSyncBudget.spentMs / 1000}`);
    metric(
      'spillway_inline_fdatasync_cooldowns_total',
      'counter',
      'Times inline fdatasync calls were turned off for a cool-down (slow calls: a slow or busy disk).',
    );
    lines.push(`spillway_inline_fdatasync_cooldowns_total ${inlineSyncBudget.coolDowns}`);

    let described: TopicDescription[] = [];
    try {
      described = topics();
    } catch {
      // The broker is closing or failed: report the server's own metrics only.
    }
    const partitionMetrics = [
      ['spillway_partition_log_start_offset', 'First offset still in the log.', 'logStartOffset'],
      ['spillway_partition_log_end_offset', 'Offset the next message will get.', 'logEndOffset'],
      ['spillway_partition_durable_offset', 'Offset below which the log is fdatasynced.', 'durableOffset'],
      ['spillway_partition_size_bytes', 'Bytes of the partition log on disk.', 'sizeBytes'],
      ['spillway_partition_segments', 'Segment files of the partition log.', 'segmentCount'],
    ] as const;
    for (const [name, help, field] of partitionMetrics) {
      metric(name, 'gauge', help);
      for (const topic of described) {
        const topicLabel = escapeLabelValue(topic.name);
        for (const partition of topic.partitions) {
          if (partition.damaged !== undefined) continue; // stopped: see spillway_partition_damaged
          lines.push(`${name}{topic="${topicLabel}",partition="${partition.partition}"} ${partition[field]}`);
        }
      }
    }
    let report: IntegrityReport | null = null;
    try {
      report = integrity();
    } catch {
      // The broker is closing.
    }
    if (report !== null) {
      metric(
        'spillway_partition_damaged',
        'gauge',
        'Partitions stopped because their data on disk is damaged or missing (1 each; see spillway doctor).',
      );
      for (const damaged of report.damagedPartitions) {
        lines.push(
          `spillway_partition_damaged{topic="${escapeLabelValue(damaged.topic)}",partition="${damaged.partition}",kind="${escapeLabelValue(damaged.kind)}"} 1`,
        );
      }
      metric('spillway_partitions_damaged', 'gauge', 'Number of partitions stopped for damage now.');
      lines.push(`spillway_partitions_damaged ${report.damagedPartitions.length}`);
      metric('spillway_open_findings', 'gauge', 'What the broker found on disk at start, by severity.');
      for (const severity of ['damage', 'warning', 'info'] as const) {
        const count = report.findings.filter((finding) => finding.severity === severity).length;
        lines.push(`spillway_open_findings{severity="${severity}"} ${count}`);
      }
      metric('spillway_open_duration_seconds', 'gauge', 'Time the broker took to open its data directory.');
      lines.push(`spillway_open_duration_seconds ${(report.openDurationMs / 1000).toFixed(3)}`);
      metric('spillway_repairs_total', 'counter', 'Partition repairs since start.');
      lines.push(`spillway_repairs_total ${report.repairs.length}`);
      metric(
        'spillway_repair_set_aside_offsets_total',
        'counter',
        'Offsets set aside into quarantine/ by repairs since start.',
      );
      const setAside = report.repairs.reduce(
        (sum, repair) =>
          sum + repair.setAside.reduce((total, range) => total + range.toOffset - range.fromOffset, 0),
        0,
      );
      lines.push(`spillway_repair_set_aside_offsets_total ${setAside}`);
    }
    let queueGroups: QueueGroupDescription[] = [];
    try {
      queueGroups = queues();
    } catch {
      // The broker is closing.
    }
    const queueMetrics = [
      ['spillway_queue_backlog', 'Queue partition: visible end offset minus the ack floor.', 'backlog'],
      [
        'spillway_queue_lag',
        'Queue partition: messages below the visible end not yet acked or dead-lettered.',
        'lag',
      ],
      [
        'spillway_queue_ack_floor',
        'Queue partition: every offset below is acked or dead-lettered.',
        'ackFloor',
      ],
      ['spillway_queue_in_flight', 'Queue partition: deliveries awaiting their ack.', 'inFlight'],
      [
        'spillway_queue_skipped_by_retention',
        'Queue partition: unacked messages retention deleted before delivery completed (skipped).',
        'skippedByRetention',
      ],
      [
        'spillway_queue_scheduled',
        'Queue partition: nacked messages waiting for their retry time.',
        'scheduled',
      ],
    ] as const;
    // Per-partition lag series are bounded (metricsLagSeriesMax): groups in name order get their
    // rows until the budget is spent; the per-group sums below are always there.
    let lagSeriesLeft = metricsLagSeriesMax;
    let lagSeriesOmitted = 0;
    const queueRowsShown = new Set<QueueGroupDescription>();
    for (const group of queueGroups) {
      const rows = group.partitions.length * queueMetrics.length;
      if (rows <= lagSeriesLeft) {
        lagSeriesLeft -= rows;
        queueRowsShown.add(group);
      } else {
        lagSeriesOmitted += rows;
      }
    }
    for (const [name, help, field] of queueMetrics) {
      metric(name, 'gauge', help);
      for (const group of queueGroups) {
        if (!queueRowsShown.has(group)) continue;
        const labels = `group="${escapeLabelValue(group.group)}",topic="${escapeLabelValue(group.topic)}"`;
        for (const partition of group.partitions) {
          lines.push(`${name}{${labels},partition="${partition.partition}"} ${partition[field]}`);
        }
      }
    }
    let delayStats: DelayStats | null = null;
    try {
      delayStats = delay();
    } catch {
      // The broker is closing.
    }
    if (delayStats !== null) {
      metric('spillway_delay_pending', 'gauge', 'Delayed messages waiting, by how far ahead they are due.');
      for (const horizon of ['withinMinute', 'withinHour', 'withinDay', 'later'] as const) {
        lines.push(`spillway_delay_pending{horizon="${horizon}"} ${delayStats[horizon]}`);
      }
      metric(
        'spillway_delay_next_due_seconds',
        'gauge',
        'Epoch time of the earliest pending delayed message (0: none).',
      );
      lines.push(`spillway_delay_next_due_seconds ${((delayStats.nextDueMs ?? 0) / 1000).toFixed(3)}`);
      metric(
        'spillway_delay_messages_total',
        'counter',
        'Delayed messages since the broker opened, by outcome.',
      );
      lines.push(`spillway_delay_messages_total{outcome="scheduled"} ${delayStats.scheduled}`);
      lines.push(`spillway_delay_messages_total{outcome="fired"} ${delayStats.fired}`);
      lines.push(`spillway_delay_messages_total{outcome="dead_lettered"} ${delayStats.deadLettered}`);
      metric('spillway_delay_lateness_seconds', 'gauge', 'Firing lateness of the recent fired messages.');
      lines.push(
        `spillway_delay_lateness_seconds{quantile="0.5"} ${(delayStats.lateness.p50Ms / 1000).toFixed(3)}`,
      );
      lines.push(
        `spillway_delay_lateness_seconds{quantile="0.99"} ${(delayStats.lateness.p99Ms / 1000).toFixed(3)}`,
      );
      metric('spillway_delay_wheel_bytes', 'gauge', 'Bytes of the timing wheel entry arrays.');
      lines.push(`spillway_delay_wheel_bytes ${delayStats.wheelBytes}`);
    }
    let dedupStats: DedupStats | null = null;
    try {
      dedupStats = dedup();
    } catch {
      // The broker is closing.
    }
    if (dedupStats !== null) {
      metric('spillway_dedup_ids', 'gauge', 'Message ids held in the msg-id dedup index.');
      lines.push(`spillway_dedup_ids ${dedupStats.ids}`);
      metric('spillway_dedup_claims', 'gauge', 'Message ids claimed by produces still being written.');
      lines.push(`spillway_dedup_claims ${dedupStats.claimed}`);
      metric('spillway_dedup_topics', 'gauge', 'Topics with ids in the msg-id dedup index.');
      lines.push(`spillway_dedup_topics ${dedupStats.topics}`);
      metric(
        'spillway_dedup_duplicates_total',
        'counter',
        'Duplicate messages answered with their first copy since the broker opened.',
      );
      lines.push(`spillway_dedup_duplicates_total ${dedupStats.duplicates}`);
    }
    let replicaStats: ReplicaPartitionStats[] | null = null;
    try {
      replicaStats = replication();
    } catch {
      // The broker is closing.
    }
    if (replicaStats !== null) renderReplication(replicaStats, metric, lines);
    let stats: StorageStats | null = null;
    try {
      stats = storage();
    } catch {
      // The broker is closing: no storage figures.
    }
    if (stats !== null) renderStorage(stats, metric, lines);
    let transactionStats: TransactionStats | null = null;
    try {
      transactionStats = transactions();
    } catch {
      // The broker is closing.
    }
    if (transactionStats !== null) renderTransactions(transactionStats, metric, lines);
    let groupDescriptions: GroupDescription[] = [];
    try {
      groupDescriptions = groups();
    } catch {
      // The broker is closing.
    }
    metric(
      'spillway_group_members',
      'gauge',
      'Members of each consumer group (group and broadcast mode) now.',
    );
    metric(
      'spillway_group_generation',
      'gauge',
      'Generation of each consumer group (bumped at every rebalance).',
    );
    for (const group of groupDescriptions) {
      const label = escapeLabelValue(group.group);
      lines.push(`spillway_group_members{group="${label}",mode="${group.mode}"} ${group.members.length}`);
      lines.push(`spillway_group_generation{group="${label}"} ${group.generation}`);
    }
    const groupRowsShown = new Set<GroupDescription>();
    for (const group of groupDescriptions) {
      if (group.partitions.length <= lagSeriesLeft) {
        lagSeriesLeft -= group.partitions.length;
        groupRowsShown.add(group);
      } else {
        lagSeriesOmitted += group.partitions.length;
      }
    }
    metric(
      'spillway_group_lag',
      'gauge',
      "Group mode: messages of a partition past the group's committed offset (log end minus committed).",
    );
    for (const group of groupDescriptions) {
      if (group.mode !== 'group' || !groupRowsShown.has(group)) continue;
      const label = escapeLabelValue(group.group);
      for (const row of group.partitions) {
        lines.push(
          `spillway_group_lag{group="${label}",topic="${escapeLabelValue(row.topic)}",partition="${row.partition}"} ${row.lag}`,
        );
      }
    }
    metric(
      'spillway_broadcast_lag',
      'gauge',
      "Broadcast mode: messages of a partition past a member's own position.",
    );
    for (const group of groupDescriptions) {
      if (group.mode !== 'broadcast' || !groupRowsShown.has(group)) continue;
      const label = escapeLabelValue(group.group);
      for (const row of group.partitions) {
        lines.push(
          `spillway_broadcast_lag{group="${label}",member="${escapeLabelValue(row.member ?? '')}",topic="${escapeLabelValue(row.topic)}",partition="${row.partition}"} ${row.lag}`,
        );
      }
    }
    metric(
      'spillway_group_lag_sum',
      'gauge',
      'Per group, all its partitions: group mode the sum of spillway_group_lag, broadcast the sum over members, shared and key_shared the sum of spillway_queue_lag over its topics.',
    );
    for (const group of groupDescriptions) {
      lines.push(
        `spillway_group_lag_sum{group="${escapeLabelValue(group.group)}",mode="${group.mode}"} ${group.lag}`,
      );
    }
    const queueSums = new Map<string, number>();
    for (const group of queueGroups) {
      const key = `group="${escapeLabelValue(group.group)}",mode="${group.mode}"`;
      queueSums.set(key, (queueSums.get(key) ?? 0) + group.partitions.reduce((sum, row) => sum + row.lag, 0));
    }
    for (const [labels, lag] of queueSums) lines.push(`spillway_group_lag_sum{${labels}} ${lag}`);
    metric(
      'spillway_lag_series_omitted',
      'gauge',
      'Per-partition group and queue series left out of this scrape to keep it under metricsLagSeriesMax (the per-group sums are complete).',
    );
    lines.push(`spillway_lag_series_omitted ${lagSeriesOmitted}`);
    lines.push('');
    return lines.join('\n');
  }
}

/** Disk and scrub series (docs/OPERATIONS.md). */
/** Replication (a cluster broker only): per replicated partition here, and per follower on its leader. */
function renderReplication(
  partitions: ReplicaPartitionStats[],
  metric: (name: string, type: 'counter' | 'gauge', help: string) => void,
  lines: string[],
): void {
  metric(
    'spillway_replica_leader_epoch',
    'gauge',
    'Leader epoch of each partition this broker replicates, by its role here.',
  );
  for (const p of partitions) {
    lines.push(
      `spillway_replica_leader_epoch{topic="${escapeLabelValue(p.topic)}",partition="${p.partition}",role="${p.role}"} ${p.leaderEpoch}`,
    );
  }
  metric(
    'spillway_replica_high_watermark',
    'gauge',
    'High watermark of each replicated partition (on a follower: as last heard from its leader).',
  );
  for (const p of partitions) {
    lines.push(
      `spillway_replica_high_watermark{topic="${escapeLabelValue(p.topic)}",partition="${p.partition}"} ${p.highWatermark}`,
    );
  }
  const led = partitions.filter((p) => p.role === 'leader');
  metric('spillway_replica_isr_size', 'gauge', 'In-sync replicas of each partition this broker leads.');
  for (const p of led) {
    lines.push(
      `spillway_replica_isr_size{topic="${escapeLabelValue(p.topic)}",partition="${p.partition}"} ${p.isrSize}`,
    );
  }
  metric(
    'spillway_replica_under_replicated_partitions',
    'gauge',
    'Partitions this broker leads whose in-sync replica set is smaller than their replica set.',
  );
  lines.push(
    `spillway_replica_under_replicated_partitions ${led.filter((p) => p.isrSize < p.replicaCount).length}`,
  );
  metric(
    'spillway_replica_follower_lag_offsets',
    'gauge',
    "Offsets a follower is behind its leader's log end (on the leader, as of the follower's last fetch).",
  );
  metric(
    'spillway_replica_follower_lag_seconds',
    'gauge',
    "Time since a follower was last caught up with its leader's log end (on the leader; 0: caught up).",
  );
  for (const p of led) {
    const labels = `topic="${escapeLabelValue(p.topic)}",partition="${p.partition}"`;
    for (const follower of p.followers) {
      lines.push(
        `spillway_replica_follower_lag_offsets{${labels},replica="${follower.brokerId}"} ${follower.lagOffsets}`,
        `spillway_replica_follower_lag_seconds{${labels},replica="${follower.brokerId}"} ${(follower.lagMs / 1000).toFixed(3)}`,
      );
    }
  }
}

function renderStorage(
  stats: StorageStats,
  metric: (name: string, type: 'counter' | 'gauge', help: string) => void,
  lines: string[],
): void {
  const gauge = (name: string, help: string, value: number): void => {
    metric(name, 'gauge', help);
    lines.push(`${name} ${value}`);
  };
  const counter = (name: string, help: string, value: number): void => {
    metric(name, 'counter', help);
    lines.push(`${name} ${value}`);
  };
  gauge(
    'spillway_disk_free_bytes',
    'Free bytes of the data directory file system (last reading).',
    stats.disk.freeBytes,
  );
  gauge('spillway_disk_total_bytes', 'Size of the data directory file system.', stats.disk.totalBytes);
  gauge(
    'spillway_disk_reserve_bytes',
    'Free space below which writes fail with STORAGE_FULL.',
    stats.disk.reserveBytes,
  );
  counter(
    'spillway_disk_reserve_refusals_total',
    'Writes refused because free space was below the reserve.',
    stats.disk.refusals,
  );
  gauge(
    'spillway_preallocated_bytes',
    'Disk preallocated ahead of the data (active segment steps, spares).',
    stats.preallocatedBytes,
  );
  const scrub = stats.scrub;
  gauge(
    'spillway_scrub_rate_bytes_per_second',
    'Configured scrub rate (0: the background scrub is off).',
    scrub.bytesPerSecond,
  );
  counter(
    'spillway_scrub_passes_total',
    'Scrub passes completed over every sealed segment.',
    scrub.passesCompleted,
  );
  counter(
    'spillway_scrub_bytes_total',
    'Bytes of sealed segments re-verified by the scrub.',
    scrub.bytesScrubbed,
  );
  counter('spillway_scrub_batches_total', 'Batches re-verified by the scrub.', scrub.batchesScrubbed);
  counter('spillway_scrub_segments_total', 'Sealed segments scrubbed to their end.', scrub.segmentsScrubbed);
  counter('spillway_scrub_damage_total', 'Distinct damaged places the scrub found.', scrub.damageFound);
  metric(
    'spillway_scrub_damage',
    'gauge',
    'One series per damaged place the scrub found (kept: the last 1000).',
  );
  for (const finding of scrub.findings) {
    lines.push(
      `spillway_scrub_damage{topic="${escapeLabelValue(finding.topic)}",partition="${finding.partition}",file="${escapeLabelValue(finding.file)}",position="${finding.position}",first_offset="${finding.baseOffset}",next_offset="${finding.nextOffset}",reason="${escapeLabelValue(finding.reason)}"} 1`,
    );
  }
}

/** Transactions: open and committing now, outcomes and check-backs since start, half bytes held. */
function renderTransactions(
  stats: TransactionStats,
  metric: (name: string, type: 'counter' | 'gauge', help: string) => void,
  lines: string[],
): void {
  metric('spillway_transactions_open', 'gauge', 'Transactions begun and not yet decided.');
  lines.push(`spillway_transactions_open ${stats.open}`);
  metric(
    'spillway_transactions_committing',
    'gauge',
    'Transactions decided commit whose messages are being delivered.',
  );
  lines.push(`spillway_transactions_committing ${stats.committing}`);
  metric(
    'spillway_transactions_total',
    'counter',
    'Transactions finished since start, by outcome (timed_out: rolled back by the broker after maxChecks).',
  );
  lines.push(`spillway_transactions_total{outcome="committed"} ${stats.committed}`);
  lines.push(`spillway_transactions_total{outcome="rolled_back"} ${stats.rolledBack - stats.timedOut}`);
  lines.push(`spillway_transactions_total{outcome="timed_out"} ${stats.timedOut}`);
  metric(
    'spillway_transaction_checks_total',
    'counter',
    'Check-backs made since start, by what came of them.',
  );
  for (const result of ['commit', 'rollback', 'unknown', 'failed'] as const) {
    lines.push(`spillway_transaction_checks_total{result="${result}"} ${stats.checkAnswers[result]}`);
  }
  lines.push(`spillway_transaction_checks_total{result="no_producer"} ${stats.checksWithoutProducer}`);
  metric(
    'spillway_transaction_half_bytes',
    'gauge',
    'Bytes of half messages held by undecided transactions.',
  );
  lines.push(`spillway_transaction_half_bytes ${stats.halfBytes}`);
}
