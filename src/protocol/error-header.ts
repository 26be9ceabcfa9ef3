/**
 * The other direction of an error frame: the SpillwayError an error answer's header stands for.
 * Used by the client for the broker's answers and by the broker for a client's answers to server
 * requests. The header comes from the other side of a connection: its fields are checked, and an
 * unknown code becomes INTERNAL (its text kept in the message), never a crash.
 */
import { isErrorCode, retriableByCode, SpillwayError } from '../errors.js';

/** The SpillwayError an error frame stands for. An unknown code becomes INTERNAL (message kept). */
export function errorFromHeader(header: unknown): SpillwayError {
  const fields =
    header !== null && typeof header === 'object' && !Array.isArray(header)
      ? (header as Record<string, unknown>)
      : {};
  const code = fields['code'];
  const message = typeof fields['message'] === 'string' ? fields['message'] : 'error without a message';
  if (!isErrorCode(code)) {
    return new SpillwayError('INTERNAL', `${message} (unknown error code ${JSON.stringify(code)})`);
  }
  const retriable = typeof fields['retriable'] === 'boolean' ? fields['retriable'] : retriableByCode[code];
  return new SpillwayError(code, message, { retriable });
}
