import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeBatch } from '../../src/format/record-batch.js';
import { nodeSpareFileSystem, type SpareFileSystem } from '../../src/storage/spare-segment.js';

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

/** Polls `condition` every millisecond (letting I/O callbacks run) until it holds. */
export async function waitUntil(condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const start = Date.now();
  while (!condition()) {
    if (Date.now() - start > timeoutMs) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

/** A system error like Node's, for fault injection. */
export function systemError(code: string, syscall: string): NodeJS.ErrnoException {
  const error: NodeJS.ErrnoException = new Error(`${code}: injected, ${syscall}`);
  error.code = code;
  error.syscall = syscall;
  return error;
}

/**
 * A spare file system whose zero-writes wait until the test releases them, and which counts the
 * calls (test-only fault injection through `PartitionLogOptions.spareFileSystem`).
 */
export function heldWriteFileSystem(): {
  fileSystem: SpareFileSystem;
  heldCount: () => number;
  releaseOne: () => void;
  writes: Array<{ position: number; length: number }>;
  datasyncs: () => number;
} {
  const held: Array<() => void> = [];
  const writes: Array<{ position: number; length: number }> = [];
  let datasyncs = 0;
  const fileSystem: SpareFileSystem = {
    ...nodeSpareFileSystem,
    write: (fd, buffer, length, position, callback) => {
      writes.push({ position, length });
      held.push(() => nodeSpareFileSystem.write(fd, buffer, length, position, callback));
    },
    datasync: (fd, callback) => {
      datasyncs++;
      nodeSpareFileSystem.datasync(fd, callback);
    },
  };
  return {
    fileSystem,
    heldCount: () => held.length,
    releaseOne: () => held.shift()?.(),
    writes,
    datasyncs: () => datasyncs,
  };
}
