/**
 * The client's CRC32C (src/client/client-crc32c.ts): the TypeScript one when `spillway/client` is
 * loaded alone, the native one once the `spillway` root entry was imported, and the same checksums
 * either way. The load checks run compiled code (dist/, `npx tsc -p tsconfig.json`) in fresh processes.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, test } from 'vitest';
import { clientCrc32c, clientCrc32cName, useClientCrc32c } from '../../src/client/client-crc32c.js';
import { crc32c } from '../../src/format/crc32c.js';
import { crc32c as nativeCrc32c } from '../../src/native.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

function nameAfterLoading(entry: string): string {
  const script = `await import(${JSON.stringify(resolve(root, entry))});
const { clientCrc32cName } = await import(${JSON.stringify(resolve(root, 'dist/src/client/client-crc32c.js'))});
process.stdout.write(clientCrc32cName());`;
  const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
  expect(child.stderr).toBe('');
  return child.stdout;
}

test('spillway/client alone computes CRC32C in TypeScript; the root entry registers the native one', () => {
  expect(nameAfterLoading('dist/src/client/index.js')).toBe('typescript');
  expect(nameAfterLoading('dist/src/index.js')).toMatch(/^native /);
});

test('a registered CRC32C is used, with the same results as the TypeScript one', () => {
  const previous = clientCrc32cName();
  let calls = 0;
  try {
    useClientCrc32c((bytes) => {
      calls++;
      return nativeCrc32c(bytes);
    }, 'native (counted)');
    for (const length of [0, 1, 7, 100, 16 * 1024 + 3]) {
      const bytes = randomBytes(length);
      expect(clientCrc32c(bytes)).toBe(crc32c(bytes));
    }
    expect(calls).toBe(5);
    expect(clientCrc32cName()).toBe('native (counted)');
  } finally {
    useClientCrc32c(previous.startsWith('native') ? nativeCrc32c : crc32c, previous);
  }
});
