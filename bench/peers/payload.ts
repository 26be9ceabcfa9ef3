/**
 * Message payloads of the peer workload: a pool of distinct payloads generated from a fixed seed, so
 * every peer (and Spillway) is sent the same bytes in the same order on every run, and nothing can
 * profit from all-zero or repeated content inside a message.
 */

/** The seed of the pool; changing it changes every payload. */
export const payloadSeed = 0x5b11_4a7e;

/** Distinct payloads in a pool; message i gets payload i % poolSize. */
export const payloadPoolSize = 256;

/** Bytes at the head of a latency payload holding the message index (uint32 big-endian). */
export const latencyIndexBytes = 4;

/** xorshift32: tiny, deterministic, and good enough to make payloads incompressible-looking. */
function nextState(state: number): number {
  state ^= state << 13;
  state ^= state >>> 17;
  state ^= state << 5;
  return state >>> 0;
}

/** `payloadPoolSize` buffers of `messageBytes` from `payloadSeed`. Read-only by convention: clients may hold them while sending. */
export function payloadPool(messageBytes: number, seed: number = payloadSeed): readonly Buffer[] {
  if (!Number.isInteger(messageBytes) || messageBytes < latencyIndexBytes) {
    throw new RangeError(`messageBytes must be an integer >= ${latencyIndexBytes}, got ${messageBytes}`);
  }
  let state = seed >>> 0 || 1;
  const pool: Buffer[] = [];
  for (let index = 0; index < payloadPoolSize; index += 1) {
    const payload = Buffer.allocUnsafe(messageBytes);
    for (let offset = 0; offset < messageBytes; offset += 1) {
      state = nextState(state);
      payload[offset] = state & 0xff;
    }
    pool.push(payload);
  }
  return pool;
}

/** A copy of the pool payload for message `index` with the index written at its head (latency runs). */
export function indexedPayload(pool: readonly Buffer[], index: number): Buffer {
  const payload = Buffer.from(pool[index % pool.length]!);
  payload.writeUInt32BE(index >>> 0, 0);
  return payload;
}

/** The index written by `indexedPayload`. */
export function payloadIndex(payload: Uint8Array): number {
  if (payload.length < latencyIndexBytes)
    throw new RangeError(`payload of ${payload.length} bytes has no index`);
  return ((payload[0]! << 24) | (payload[1]! << 16) | (payload[2]! << 8) | payload[3]!) >>> 0;
}

/**
 * The payloads of a latency run, made before it starts so the publishing loop allocates nothing per
 * message (a 16 KiB copy per message made the measuring process itself run a major GC every few
 * hundred ms, which delayed every system's messages alike): `slots` buffers cut from one slab, slot
 * `index % slots` for message `index`, its index written at its head by `take`. A slot is handed out
 * again only once `reusable(earlier index)` says the message that last used it is done with (received
 * and its send settled), since a client may still hold the bytes of a message in flight; otherwise
 * `take` returns a fresh copy (counted in `copies`).
 */
export class LatencyPayloads {
  private readonly slots: Buffer[];
  /** Messages that got a fresh copy because their slot was still in use. */
  copies = 0;

  constructor(
    private readonly pool: readonly Buffer[],
    slotCount: number,
  ) {
    const size = pool[0]!.length;
    const slab = Buffer.allocUnsafeSlow(size * slotCount);
    this.slots = Array.from({ length: slotCount }, (_, slot) => {
      const payload = slab.subarray(slot * size, (slot + 1) * size);
      pool[slot % pool.length]!.copy(payload);
      return payload;
    });
  }

  /** The payload of message `index` (pool payload `index % pool.length`, index at its head). */
  take(index: number, reusable: (earlier: number) => boolean): Buffer {
    const slots = this.slots.length;
    if (index >= slots && !reusable(index - slots)) {
      this.copies += 1;
      return indexedPayload(this.pool, index);
    }
    const payload = this.slots[index % slots]!;
    if (index >= slots) this.pool[index % this.pool.length]!.copy(payload);
    payload.writeUInt32BE(index >>> 0, 0);
    return payload;
  }
}
