/**
 * HTTP status of each error code of the HTTP API (docs/PROTOCOL.md, "HTTP API"). The body of every
 * error answer is `{"error":{"code","message"}}` with the stable code; the status only groups them.
 */
import { type ErrorCode, SpillwayError, type SpillwayErrorOptions } from '../errors.js';

export const httpStatusByCode: Readonly<Record<ErrorCode, number>> = {
  INVALID_ARGUMENT: 400,
  INVALID_BATCH: 400,
  CORRUPT_BATCH: 400,
  INVALID_TOPIC_NAME: 400,
  UNAUTHENTICATED: 401,
  FORBIDDEN: 403,
  NOT_LEADER: 503,
  FENCED_LEADER_EPOCH: 409,
  NOT_ENOUGH_REPLICAS: 503,
  NOT_COORDINATOR: 503,
  ORIGIN_NOT_ALLOWED: 403,
  HOST_NOT_ALLOWED: 403,
  PROTOCOL_ERROR: 400,
  UNSUPPORTED_VERSION: 400,
  UNKNOWN_OPCODE: 400,
  UNKNOWN_TOPIC: 404,
  UNKNOWN_PARTITION: 404,
  UNKNOWN_GROUP: 404,
  UNKNOWN_MEMBER: 409,
  FENCED_GENERATION: 409,
  GROUP_NOT_EMPTY: 409,
  PRODUCER_FENCED: 409,
  SERVICE_FENCED: 409,
  OUT_OF_ORDER_SEQUENCE: 409,
  UNKNOWN_PRODUCER_ID: 409,
  TOPIC_EXISTS: 409,
  UNKNOWN_TRANSACTION: 404,
  TRANSACTION_COMMITTED: 409,
  TRANSACTION_ROLLED_BACK: 409,
  TRANSACTION_TOO_LARGE: 413,
  TOO_MANY_TRANSACTIONS: 429,
  // The delivery is over (deadline passed, settled, given again): the receipt no longer counts.
  RECEIPT_EXPIRED: 409,
  RECEIPT_INVALID: 400,
  FRAME_TOO_LARGE: 413,
  // 416 rather than 400: a client can tell "ask again from logStartOffset" from bad input.
  OFFSET_OUT_OF_RANGE: 416,
  TOO_MANY_REQUESTS: 429,
  BACKPRESSURE: 429,
  CORRUPT_LOG: 500,
  STORAGE_IO: 500,
  INTERNAL: 500,
  BROKER_CLOSING: 503,
  STORAGE_FULL: 503,
  TOO_MANY_OPEN_FILES: 503,
  LOG_CLOSED: 503,
  PARTITION_DAMAGED: 503,
  LOG_TRUNCATED: 503,
  NATIVE_UNAVAILABLE: 503,
  CONNECTION_CLOSED: 503,
  TIMEOUT: 504,
  // Answers of a client to a server request: they never reach HTTP, but every code has a status.
  NO_HANDLER: 501,
  HANDLER_FAILED: 502,
  // Client-side errors of consumer.run's idempotency stores: they never reach HTTP.
  IDEMPOTENCY_STORE: 503,
  DUPLICATE_DELIVERY: 409,
  // Cluster mode (docs/CLUSTER.md).
  CLUSTER_UNAVAILABLE: 503,
  BROKER_ID_IN_USE: 409,
};

export const statusText: Readonly<Record<number, string>> = {
  200: 'OK',
  201: 'Created',
  204: 'No Content',
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  408: 'Request Timeout',
  409: 'Conflict',
  413: 'Content Too Large',
  415: 'Unsupported Media Type',
  416: 'Range Not Satisfiable',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  501: 'Not Implemented',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

/** An error with an HTTP status other than its code's (no route: 404, wrong method: 405, ...). */
export class HttpError extends SpillwayError {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;

  constructor(
    status: number,
    code: ErrorCode,
    message: string,
    options: SpillwayErrorOptions & { headers?: Record<string, string> } = {},
  ) {
    super(code, message, options);
    this.name = 'HttpError';
    this.status = status;
    this.headers = options.headers ?? {};
  }
}

export function httpStatusOf(error: SpillwayError): number {
  return error instanceof HttpError ? error.status : httpStatusByCode[error.code];
}
