/**
 * The CRC32C the client computes (batches it builds) and checks (batches it reads). By default the
 * pure TypeScript one (src/format/crc32c.ts): `spillway/client` must load without the native addon, so
 * nothing here imports it. Whoever has the addon loaded registers its function with
 * `useClientCrc32c`: the `spillway` root entry does at import (src/index.ts), the CLI does when the
 * addon loads (it is optional there). The function must give the same results as the TypeScript one.
 * Single-threaded: a registration applies to every batch built or checked afterwards.
 */
import { crc32c } from '../format/crc32c.js';
import type { Crc32cFunction } from '../format/record-batch.js';

let active: Crc32cFunction = crc32c;
let activeName = 'typescript';

/** Makes `fn` the client's CRC32C (`name` for diagnostics, e.g. 'native sse4.2-3way'). */
export function useClientCrc32c(fn: Crc32cFunction, name: string): void {
  active = fn;
  activeName = name;
}

/** Which CRC32C the client uses now: 'typescript' unless one was registered. */
export function clientCrc32cName(): string {
  return activeName;
}

/** CRC32C of all of `bytes` with the registered function (the TypeScript one by default). */
export function clientCrc32c(bytes: Uint8Array): number {
  return active(bytes);
}
