import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeBatch } from '../../src/format/record-batch.js';

/** A fresh temporary directory, removed by the returned cleanup. */
export function temporaryDirectory(prefix = 'spillway-test-'): { path: string; remove: () => void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

/** A batch of `count` records whose values say which batch and record they are. */
export function makeBatch(tag: string, count = 1, timestamp = 1_700_000_000_000, valueBytes = 0): Uint8Array {
  const padding = valueBytes > 0 ? 'x'.repeat(valueBytes) : '';
  const records = Array.from({ length: count }, (_, i) => ({
    key: `k-${tag}-${i}`,
    value: `${tag}/${i}${padding}`,
    timestamp: timestamp + i,
  }));
  return encodeBatch(records);
}
