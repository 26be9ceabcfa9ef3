/**
 * The version of the installed spillway package (its package.json), for HELLO and `spillway
 * --version`. Works from src/ (tests) and dist/src/ (built): the package root is two or three levels
 * above this file's directory. '0.0.0' when no package.json of spillway is found.
 */
import { readFile } from 'node:fs/promises';

let packageVersion: string | undefined;

export async function readPackageVersion(): Promise<string> {
  if (packageVersion !== undefined) return packageVersion;
  for (const relative of ['../package.json', '../../package.json']) {
    try {
      const text = await readFile(new URL(relative, import.meta.url), 'utf8');
      const parsed = JSON.parse(text) as { name?: string; version?: string };
      if (parsed.name === 'spillway' && typeof parsed.version === 'string') {
        packageVersion = parsed.version;
        return packageVersion;
      }
    } catch {
      // try the next candidate
    }
  }
  packageVersion = '0.0.0';
  return packageVersion;
}
