/**
 * One broker per data directory: an exclusive flock on `<dataDir>/broker.lock`, held from open to
 * close. Two brokers writing the same segment files would corrupt each other, whether they are in
 * one process or two. flock locks belong to the open file, so the kernel releases the lock when the
 * process dies: a crash never leaves a stale lock behind. The file holds the owner's pid, for people.
 */
import { closeSync, ftruncateSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { InvalidArgumentError } from '../errors.js';
import { tryLockFile } from '../native.js';
import { fileModes } from '../storage/file-modes.js';

export const lockFileName = 'broker.lock';

export class DataDirectoryLock {
  private fd: number | null;

  private constructor(fd: number) {
    this.fd = fd;
  }

  /** Takes the lock of `dataDir` (which must exist), or throws INVALID_ARGUMENT when it is held. */
  static acquire(dataDir: string): DataDirectoryLock {
    const path = join(dataDir, lockFileName);
    const fd = openSync(path, 'a+', fileModes.file);
    let acquired = false;
    try {
      acquired = tryLockFile(fd);
      if (!acquired) {
        throw new InvalidArgumentError(
          `data directory ${dataDir} is in use by another broker (${path} is locked)`,
        );
      }
      ftruncateSync(fd, 0);
      writeSync(fd, `${process.pid}\n`);
      return new DataDirectoryLock(fd);
    } finally {
      if (!acquired) closeSync(fd);
    }
  }

  release(): void {
    if (this.fd === null) return;
    closeSync(this.fd);
    this.fd = null;
  }
}
