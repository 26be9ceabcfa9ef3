/**
 * The "Limits" table of docs/PROTOCOL.md names constants of src/limits.ts and gives their values in
 * words ("16 MiB + 64 KiB", "10,000 ms", "2^31 - 1"): each row must name a real constant and its
 * value must be the constant's value, so the document cannot drift from the code.
 */
import { readFileSync } from 'node:fs';
import { expect, it } from 'vitest';
import * as limits from '../../src/limits.js';

const doc = readFileSync(new URL('../../docs/PROTOCOL.md', import.meta.url), 'utf8');
const values = limits as unknown as Record<string, number>;

/** "16 MiB + 64 KiB", "8 MiB + frameBytesMax + 1 MiB", "2^31 - 1", "10,000 ms" -> a number. */
function documentedValue(text: string): number {
  let total = 0;
  let sign = 1;
  for (const term of text.replace(/,/g, '').split(/\s+([+-])\s+/)) {
    if (term === '+' || term === '-') {
      sign = term === '+' ? 1 : -1;
      continue;
    }
    total += sign * termValue(term, text);
  }
  return total;
}

function termValue(term: string, text: string): number {
  const amount = /^(\d+)\s*(KiB|MiB|B|ms)?$/.exec(term);
  if (amount !== null) {
    const unit = { KiB: 1024, MiB: 1024 * 1024, B: 1, ms: 1 }[amount[2] ?? 'B']!;
    return Number(amount[1]) * unit;
  }
  const power = /^(\d+)\^(\d+)$/.exec(term);
  if (power !== null) return Number(power[1]) ** Number(power[2]);
  if (term in values) return values[term]!;
  throw new Error(`cannot read '${term}' in '${text}'`);
}

it('every bound in the Limits table of docs/PROTOCOL.md is in src/limits.ts with that value', () => {
  const section = doc.slice(doc.indexOf('## Limits'), doc.indexOf('## HTTP API'));
  const rows = [...section.matchAll(/^\| `(\w+)`\s*\| ([^|]+?)\s*\|/gm)];
  expect(rows.length).toBeGreaterThan(10);
  for (const [, name, value] of rows) {
    expect(values[name!], `${name} in src/limits.ts`).toEqual(expect.any(Number));
    expect(documentedValue(value!), name).toBe(values[name!]);
  }
});
