/**
 * A bound on the nesting of a JSON document, checked on its bytes before JSON.parse: a deeply nested
 * body (`[[[[...`) would otherwise cost a deep recursion and a long stall of the event loop in the
 * parser and in every walk over the result. One linear pass, no allocation; brackets inside strings
 * are skipped (escapes honoured). Malformed JSON passes through to JSON.parse, which reports it.
 */
import { InvalidArgumentError } from '../errors.js';

const quote = 0x22;
const backslash = 0x5c;
const openBrace = 0x7b;
const openBracket = 0x5b;
const closeBrace = 0x7d;
const closeBracket = 0x5d;

/** Throws INVALID_ARGUMENT when arrays and objects in `bytes` nest deeper than `depthMax`. */
export function checkJsonDepth(bytes: Uint8Array, depthMax: number): void {
  let depth = 0;
  let inString = false;
  for (let index = 0; index < bytes.length; index++) {
    const byte = bytes[index]!;
    if (inString) {
      if (byte === backslash) index++;
      else if (byte === quote) inString = false;
    } else if (byte === quote) {
      inString = true;
    } else if (byte === openBrace || byte === openBracket) {
      if (++depth > depthMax) {
        throw new InvalidArgumentError(
          `request body nests arrays and objects deeper than ${depthMax} levels`,
        );
      }
    } else if (byte === closeBrace || byte === closeBracket) {
      depth--;
    }
  }
}
