/**
 * What both transports do with answers the same way: turn an error frame's header into a
 * SpillwayError with the broker's code, message and retriable flag, and check the HELLO answer.
 * Answers come from a broker we trust less than our own code: their fields are checked, and a
 * missing or ill-typed one is a PROTOCOL_ERROR, never a crash further in.
 */
import { SpillwayError } from '../errors.js';
import type { HelloRequest } from '../protocol/messages.js';
import { protocolVersion, protocolVersionMin } from '../protocol/opcodes.js';
import type { HelloInfo } from './transport.js';

export { errorFromHeader } from '../protocol/error-header.js';

type Fields = Record<string, unknown>;

function fieldsOf(header: unknown, what: string): Fields {
  if (header === null || typeof header !== 'object' || Array.isArray(header)) {
    throw new SpillwayError('PROTOCOL_ERROR', `${what}: the broker's answer header is not a map`);
  }
  return header as Fields;
}

/** A safe non-negative integer field of a broker answer, or PROTOCOL_ERROR. */
export function integerOf(header: unknown, name: string, what: string): number {
  const value = fieldsOf(header, what)[name];
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new SpillwayError(
      'PROTOCOL_ERROR',
      `${what}: the broker's answer has ${name} = ${JSON.stringify(value)}, not an integer >= 0`,
    );
  }
  return value;
}

export function parseHelloResponse(header: unknown): HelloInfo {
  const fields = fieldsOf(header, 'HELLO');
  return {
    protocolVersion: integerOf(header, 'protocolVersion', 'HELLO'),
    brokerVersion: typeof fields['brokerVersion'] === 'string' ? fields['brokerVersion'] : 'unknown',
    frameBytesMax: integerOf(header, 'frameBytesMax', 'HELLO'),
    inFlightRequestsMax: Math.max(1, integerOf(header, 'inFlightRequestsMax', 'HELLO')),
    sessionId: fields['sessionId'] === undefined ? null : integerOf(header, 'sessionId', 'HELLO'),
  };
}

/** The HELLO request of this client: the range of protocol versions it speaks, and its id. */
export function helloRequest(clientId: string | undefined, token?: string): HelloRequest {
  const request: HelloRequest = { protocolVersion: protocolVersionMin, protocolVersionMax: protocolVersion };
  if (clientId !== undefined) request.clientId = clientId;
  if (token !== undefined) request.token = token;
  return request;
}

/** Checks the version a broker chose in HELLO: one this client speaks, else UNSUPPORTED_VERSION. */
export function checkNegotiatedVersion(hello: HelloInfo, broker: string): void {
  if (hello.protocolVersion < protocolVersionMin || hello.protocolVersion > protocolVersion) {
    throw new SpillwayError(
      'UNSUPPORTED_VERSION',
      `${broker} chose protocol version ${hello.protocolVersion}; this client speaks ${protocolVersionMin}..${protocolVersion}`,
    );
  }
}

/** CONNECTION_CLOSED for requests made after (or pending during) the client's own close(). */
export function closedError(what: string): SpillwayError {
  return new SpillwayError('CONNECTION_CLOSED', `${what} is closed`, { retriable: false });
}
