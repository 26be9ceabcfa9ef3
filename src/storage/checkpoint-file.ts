/**
 * Small crash-safe state files (the recovery point of a partition log, later the metadata of the
 * broker). A write goes to `<name>.tmp` (`<name>.async.tmp` for `write`), is fsynced, renamed over `<name>`, then the directory is
 * fsynced: after a crash the file holds either the old or the new content, never a mix.
 *
 * Content: one JSON document, then a newline and the CRC32C of the JSON bytes in hex, so a file
 * damaged on disk is detected (`read` returns `{ status: 'corrupt' }`) instead of being believed.
 * Writes of one CheckpointFile are serialized; `write` may be called concurrently.
 */
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { crc32c } from '../format/crc32c.js';
import { fileModes } from './file-modes.js';

export type CheckpointRead<T> =
  | { status: 'missing' }
  | { status: 'corrupt'; reason: string }
  | { status: 'ok'; value: T };

function encode(value: unknown): Buffer {
  const json = Buffer.from(JSON.stringify(value), 'utf8');
  return Buffer.concat([json, Buffer.from(`\n${crc32c(json).toString(16).padStart(8, '0')}\n`, 'utf8')]);
}

/** fsync a directory so a rename or a new file in it survives a crash. */
export function fsyncDirectorySync(directory: string): void {
  const fd = openSync(directory, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

export async function fsyncDirectory(directory: string): Promise<void> {
  const handle = await open(directory, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export class CheckpointFile<T> {
  readonly path: string;
  private chain: Promise<void> = Promise.resolve();
  /** Writes started so far (sync and async): an async write whose turn was overtaken is not renamed. */
  private generation = 0;

  constructor(path: string) {
    this.path = path;
  }

  read(): CheckpointRead<T> {
    let bytes: Buffer;
    try {
      bytes = readFileSync(this.path);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { status: 'missing' };
      throw error;
    }
    const text = bytes.toString('utf8');
    const lines = text.split('\n');
    if (lines.length < 2 || lines[0] === undefined || lines[1] === undefined) {
      return { status: 'corrupt', reason: 'missing checksum line' };
    }
    const json = Buffer.from(lines[0], 'utf8');
    const expected = crc32c(json).toString(16).padStart(8, '0');
    if (lines[1] !== expected) return { status: 'corrupt', reason: `checksum ${lines[1]} != ${expected}` };
    try {
      return { status: 'ok', value: JSON.parse(lines[0]) as T };
    } catch (error) {
      return { status: 'corrupt', reason: `bad JSON: ${(error as Error).message}` };
    }
  }

  /** Synchronous crash-safe write (used on open and close). */
  writeSync(value: T): void {
    this.generation++;
    const temporary = `${this.path}.tmp`;
    const fd = openSync(temporary, 'w', fileModes.file);
    try {
      const bytes = encode(value);
      let written = 0;
      while (written < bytes.length) written += writeSync(fd, bytes, written, bytes.length - written);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temporary, this.path);
    fsyncDirectorySync(dirname(this.path));
  }

  /** Asynchronous crash-safe write; concurrent calls are applied in call order. */
  write(value: T): Promise<void> {
    const generation = ++this.generation;
    const next = this.chain.then(() => this.writeNow(value, generation));
    // A failed write must not poison later ones; the caller of this write still sees the error.
    this.chain = next.catch(() => undefined);
    return next;
  }

  /** Resolves when every write issued so far has finished. */
  async idle(): Promise<void> {
    await this.chain;
  }

  /**
   * An async write has its own temporary file, and is not renamed into place when a later write
   * (sync, or async: it comes next) was started meanwhile: that one holds newer content, and a
   * stale value must never land over it (a recovery point past a truncation, say).
   */
  private async writeNow(value: T, generation: number): Promise<void> {
    if (generation !== this.generation) return;
    const temporary = `${this.path}.async.tmp`;
    const handle = await open(temporary, 'w', fileModes.file);
    try {
      await handle.writeFile(encode(value));
      await handle.sync();
    } finally {
      await handle.close();
    }
    if (generation !== this.generation) {
      await rm(temporary, { force: true });
      return;
    }
    await rename(temporary, this.path);
    await fsyncDirectory(dirname(this.path));
  }
}
