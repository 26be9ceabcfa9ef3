/**
 * Checks made on every HTTP request and WebSocket upgrade before anything else runs, against
 * cross-site requests from a browser (docs/PROTOCOL.md, "Origin and Host checks"):
 * - Origin: a request that carries an `Origin` header comes from a web page; it is refused (403
 *   ORIGIN_NOT_ALLOWED) unless that origin is in the allowed list (`*` allows every origin). Programs
 *   (the Spillway client, curl) send no Origin and are not affected.
 * - Host: when the server listens on a loopback address, the `Host` header must name this machine
 *   (`localhost`, `127.0.0.1`, `[::1]`, any port: a local proxy or tunnel may front the broker) or
 *   be one of the allowed host names (`name` for any port, `name:port` for that one): a page whose
 *   DNS name was rebound to 127.0.0.1 sends its own name and is refused (403 HOST_NOT_ALLOWED). A
 *   request without Host (HTTP/1.0, not a browser) passes.
 * - Content type: where a JSON body is expected, only `application/json` is accepted (415), so a plain
 *   HTML form (`text/plain`, `application/x-www-form-urlencoded`, `multipart/form-data`) cannot
 *   drive the API even if an origin check were relaxed.
 * Pure functions of their inputs; no state.
 */
import type { SpillwayError } from '../errors.js';
import { HttpError } from './http-status.js';

export interface RequestGuardOptions {
  /** Origins (`scheme://host[:port]`, as browsers send them) allowed to connect; `*`: any. */
  allowedOrigins: readonly string[];
  /** Extra Host names (`name`: any port; `name:port`: that port) accepted when listening on loopback. */
  allowedHosts: readonly string[];
  /** The address the server listens on and its port. */
  listenHost: string;
  port: number;
}

const loopbackAddresses = new Set(['127.0.0.1', '::1', 'localhost', '0:0:0:0:0:0:0:1']);

/** True for an address only this machine can reach (127.0.0.0/8, ::1, localhost). */
export function isLoopbackAddress(host: string): boolean {
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  return loopbackAddresses.has(bare.toLowerCase()) || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(bare);
}

/** Normalises an origin for comparison: lower case, no trailing slash. */
function normaliseOrigin(origin: string): string {
  return origin.trim().toLowerCase().replace(/\/+$/, '');
}

export class RequestGuard {
  private readonly origins: Set<string>;
  private readonly anyOrigin: boolean;
  private readonly hosts: Set<string> | null;

  constructor(options: RequestGuardOptions) {
    this.origins = new Set(options.allowedOrigins.map(normaliseOrigin));
    this.anyOrigin = this.origins.has('*');
    if (!isLoopbackAddress(options.listenHost)) {
      this.hosts = null; // reachable from elsewhere under any name: the Host header proves nothing
    } else {
      const hosts = new Set(['localhost', '127.0.0.1', '[::1]']);
      if (!options.listenHost.includes(':')) hosts.add(options.listenHost.toLowerCase());
      for (const name of options.allowedHosts) hosts.add(name.toLowerCase());
      this.hosts = hosts;
    }
  }

  /** True when the Host header names this machine, or an allowed name (its port, if given, too). */
  private hostAllowed(host: string): boolean {
    const hosts = this.hosts;
    if (hosts === null) return true;
    const lower = host.toLowerCase();
    if (hosts.has(lower)) return true;
    // `name:port` or `[v6]:port`: the name decides (any port: a local proxy or tunnel may front the
    // broker; a rebound page sends its own name, whatever the port).
    const name = /^(.*):\d+$/.exec(lower)?.[1];
    return name !== undefined && hosts.has(name);
  }

  /** The error to answer a request with these headers, or null when it may go on. */
  check(origin: string, host: string): SpillwayError | null {
    if (origin !== '' && !this.anyOrigin && !this.origins.has(normaliseOrigin(origin))) {
      return new HttpError(
        403,
        'ORIGIN_NOT_ALLOWED',
        `requests from the web page origin '${origin}' are refused: start the broker with --allow-origin ${origin} to allow it`,
      );
    }
    if (host !== '' && !this.hostAllowed(host)) {
      return new HttpError(
        403,
        'HOST_NOT_ALLOWED',
        `Host '${host}' does not name this broker (listening on a loopback address): connect to localhost or 127.0.0.1, or start the broker with --allow-host NAME`,
      );
    }
    return null;
  }
}

/** Throws 415 unless `contentType` is application/json (parameters such as charset allowed). */
export function requireJsonContentType(contentType: string): void {
  const mediaType = contentType.split(';', 1)[0]!.trim().toLowerCase();
  if (mediaType !== 'application/json') {
    throw new HttpError(
      415,
      'INVALID_ARGUMENT',
      `content-type must be application/json, got '${contentType === '' ? '(none)' : contentType}'`,
      { headers: { connection: 'close' } }, // the body is not read
    );
  }
}
