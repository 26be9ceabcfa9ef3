/**
 * Gives the disk space of the segment files of closed logs back at once, before they are removed.
 *
 * Why: a segment file stays mapped (storage/memory-map.ts) until the garbage collector releases
 * every view of its map, and an unlinked file keeps its blocks while mapped. Deleting a topic on a
 * full disk must free its space now, not at some later collection. Punching a hole over the whole
 * file keeps its size, so every view still reads (zeros) and nothing can raise SIGBUS; the caller
 * guarantees that the logs are closed and their data is no longer served (a deleted topic).
 */
import { closeSync, openSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { punchHole } from '../native.js';

/**
 * Punches out every `*.log` file under `directory` (recursively). Best effort: a file that cannot
 * be punched (a file system without hole punching) is left to the removal that follows. Returns the
 * bytes released.
 */
export function releaseSegmentSpace(directory: string): number {
  let released = 0;
  let entries: string[];
  try {
    entries = readdirSync(directory);
  } catch {
    return 0;
  }
  for (const name of entries) {
    const path = join(directory, name);
    let size: number;
    let isDirectory: boolean;
    try {
      const stats = statSync(path);
      size = stats.size;
      isDirectory = stats.isDirectory();
    } catch {
      continue;
    }
    if (isDirectory) {
      released += releaseSegmentSpace(path);
      continue;
    }
    if (!name.endsWith('.log') || size === 0) continue;
    let fd = -1;
    try {
      fd = openSync(path, 'r+');
      punchHole(fd, 0, size);
      released += size;
    } catch {
      // Left to the removal (and the garbage collector).
    } finally {
      if (fd >= 0) closeSync(fd);
    }
  }
  return released;
}
