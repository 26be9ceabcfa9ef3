/**
 * Where METADATA (asked of one broker) places a partition, once `accept` holds: the wait of the
 * cluster tests that follow a partition or an internal topic (`__consumer_offsets`: the group
 * coordinator) through failures. Each attempt is a new client connection; failed attempts (the
 * broker not listening yet, a topic not created locally yet) are tried again until the bound.
 */
import { Spillway } from '../../../src/client/index.js';
import type { MetadataPartition } from '../../../src/protocol/cluster-metadata-api.js';
import { waitFor } from './wait-for.js';

export async function metadataPlacement(
  url: string,
  topic: string,
  accept: (partition: MetadataPartition) => boolean,
  options: { partition?: number; boundMs?: number } = {},
): Promise<MetadataPartition> {
  const index = options.partition ?? 0;
  return waitFor(
    `${topic}/${index} placed`,
    async () => {
      const sw = await Spillway.connect(url);
      try {
        const metadata = await sw.admin.metadata([topic]);
        const partition = metadata.partitions.find((p) => p.topic === topic && p.partition === index);
        return partition !== undefined && accept(partition) ? partition : undefined;
      } finally {
        await sw.close();
      }
    },
    { boundMs: options.boundMs, pollMs: 50, retryErrors: true },
  );
}
