import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { type ErrorCode, retriableByCode } from '../../src/errors.js';
import { httpStatusByCode } from '../../src/server/http-status.js';

const doc = readFileSync(new URL('../../docs/PROTOCOL.md', import.meta.url), 'utf8');
const codes = Object.keys(retriableByCode) as ErrorCode[];

/** Rows of the "Error codes" table: | `CODE` | yes/no | meaning |. */
function documentedRows(): Map<string, { retriable: string; meaning: string }> {
  const section = doc.slice(doc.indexOf('### Error codes'), doc.indexOf('## Limits'));
  const rows = new Map<string, { retriable: string; meaning: string }>();
  for (const match of section.matchAll(/^\| `([A-Z_]+)`\s*\| (\w+)\s*\| (.+) \|$/gm)) {
    rows.set(match[1]!, { retriable: match[2]!, meaning: match[3]!.trim() });
  }
  return rows;
}

describe('error codes in docs/PROTOCOL.md', () => {
  it('every ErrorCode appears in the document', () => {
    for (const code of codes) expect(doc, code).toContain(`\`${code}\``);
  });

  it('the error table lists every code once, with its retriable flag and a meaning, and nothing else', () => {
    const rows = documentedRows();
    expect([...rows.keys()].sort()).toEqual([...codes].sort());
    for (const code of codes) {
      const row = rows.get(code)!;
      expect(row.retriable, code).toBe(retriableByCode[code] ? 'yes' : 'no');
      expect(row.meaning.length, code).toBeGreaterThan(10);
    }
  });

  it('every code has an HTTP status, and the status table names it under that status', () => {
    const section = doc.slice(doc.indexOf('| Status | Codes |'), doc.indexOf('### Metrics'));
    for (const code of codes) {
      const status = httpStatusByCode[code];
      expect(status, code).toBeGreaterThanOrEqual(400);
      const row = section.split('\n').find((line) => line.startsWith(`| ${status} |`));
      expect(row, `${code} -> ${status}`).toBeDefined();
      expect(row, `${code} -> ${status}`).toContain(`\`${code}\``);
    }
  });
});
