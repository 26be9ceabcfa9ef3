/**
 * Assertions for invariants: conditions that hold unless Spillway itself has a bug. A failed
 * assertion writes `spillway: assertion failed: <message>` and the stack to stderr synchronously
 * and aborts the process (SIGABRT, exit code 134 from a shell): a broker whose state broke an
 * invariant must not keep serving, and must not let a caller catch the failure and go on.
 *
 * Not for bad input or operating errors (a malformed batch, a full disk, a damaged file): those
 * are typed SpillwayErrors (errors.ts) that callers handle. Rule of thumb: if a test can provoke it
 * through a public API with any input, it is not an assertion.
 *
 * Messages are strings built only on failure where they are costly: pass a function on hot paths.
 */
import { writeSync } from 'node:fs';

export type AssertionMessage = string | (() => string);

/** Reports the broken invariant on stderr and aborts the process. Never returns. */
function fail(message: AssertionMessage): never {
  let text: string;
  try {
    text = typeof message === 'function' ? message() : message;
  } catch (error) {
    text = `(the assertion message itself failed: ${String(error)})`;
  }
  // An Error only for its stack (the frames below this module show where the invariant broke).
  const stack = new Error(text).stack ?? text;
  const report = `spillway: assertion failed: ${text}\n${stack}\n`;
  try {
    writeSync(2, report);
  } catch {
    // stderr closed: abort anyway.
  }
  process.abort();
}

/** Aborts the process (see the header) unless `condition` holds. */
export function assert(condition: unknown, message: AssertionMessage): asserts condition {
  if (!condition) fail(message);
}

/** Marks code that cannot run when the invariants hold (an impossible branch or state); aborts the process. */
export function unreachable(message: AssertionMessage): never {
  fail(message);
}
