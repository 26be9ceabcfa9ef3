/**
 * The end of a failure test: once the load stopped and the cluster is healthy again, one more value
 * per partition is acknowledged (acks 'all': after it every replica's high watermark covers all that
 * came before), then a consumer reads each partition from every broker and the reads go into the
 * history, so the checker compares what each replica serves with what was acknowledged.
 */
import type { ClusterProcesses } from './cluster-processes.js';
import { waitFor } from './cluster-processes.js';
import type { LeaderRouter } from './leader-router.js';
import { readPartition } from './leader-router.js';
import type { OperationHistory } from './operation-history.js';

export async function readEveryReplica(
  cluster: ClusterProcesses,
  router: LeaderRouter,
  history: OperationHistory,
  partitions: readonly number[],
  tag: string,
): Promise<void> {
  for (const partition of partitions) {
    const marker = history.invoke(partition, `${tag}-final-p${partition}`);
    const offset = await router.send(partition, marker.value, (error) => history.resend(marker, error));
    history.ack(marker, offset);
    for (const id of cluster.ids) {
      const url = cluster.broker(id).url;
      const read = await waitFor(
        `broker ${id} to serve ${router.topic}/${partition} up to ${offset}`,
        async () => {
          const answer = await readPartition(url, router.topic, partition).catch(() => undefined);
          return answer !== undefined && answer.highWatermark > offset ? answer : undefined;
        },
      );
      history.read(partition, `broker ${id} (final)`, read.records);
    }
  }
}

/** p50 and max of a list of durations, for the printed figures. */
export function summary(values: readonly number[]): string {
  if (values.length === 0) return 'none';
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number): number =>
    sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number;
  return `p50 ${Math.round(at(0.5))} ms, max ${Math.round(sorted.at(-1) as number)} ms (n=${sorted.length})`;
}
