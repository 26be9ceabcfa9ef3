/** A usage mistake on the command line: printed with the usage text, exit code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** Parses a non-negative integer flag value, or throws a UsageError naming the flag. */
export function integerFlag(name: string, value: string | undefined, min = 0): number | undefined {
  if (value === undefined) return undefined;
  if (!/^-?\d+$/.test(value)) throw new UsageError(`--${name} must be an integer, got '${value}'`);
  const parsed = Number(value);
  if (!Number.isSafeInteger(parsed) || parsed < min)
    throw new UsageError(`--${name} must be an integer >= ${min}`);
  return parsed;
}
