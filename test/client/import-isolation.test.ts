/**
 * `spillway/client` must load without the native addon, mmap or uWebSockets (API.md): nothing
 * under src/client may import, directly or through other modules, src/native.ts, src/storage/,
 * src/broker/, src/server/, @riaskov/mmap-io or uWS. Checked twice: statically over the import
 * graph of the sources, and at run time by compiling src/client/index.ts alone and loading it in a
 * fresh Node process whose module resolver refuses the forbidden modules.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { expect, test } from 'vitest';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const clientDirectory = join(root, 'src/client');

const forbiddenFiles = [/^src\/native\.ts$/, /^src\/storage\//, /^src\/broker\//, /^src\/server\//];
const forbiddenPackages = [/^@riaskov\/mmap-io/, /uws/i, /^bindings$/, /\.node$/];

/** Import specifiers of a TypeScript source (static imports, re-exports, dynamic imports with a literal). */
function importsOf(path: string): string[] {
  const source = ts.createSourceFile(path, readFileSync(path, 'utf8'), ts.ScriptTarget.ES2022, true);
  const found: string[] = [];
  const visit = (node: ts.Node): void => {
    if ((ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier) {
      if (ts.isStringLiteral(node.moduleSpecifier)) found.push(node.moduleSpecifier.text);
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      const argument = node.arguments[0];
      // A computed specifier cannot be followed statically: not allowed in the client.
      found.push(argument && ts.isStringLiteral(argument) ? argument.text : '<computed dynamic import>');
    } else if (
      ts.isCallExpression(node) &&
      ts.isIdentifier(node.expression) &&
      node.expression.text === 'require'
    ) {
      found.push('<require>');
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

function sourceFiles(directory: string): string[] {
  return readdirSync(directory, { withFileTypes: true }).flatMap((entry) => {
    const path = join(directory, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

/** The files the client reaches from every source under src/client, the packages they import, and what is wrong. */
function clientImportGraph(): { visited: Set<string>; packages: Set<string>; problems: string[] } {
  const visited = new Set<string>();
  const packages = new Set<string>();
  const problems: string[] = [];
  const pending = sourceFiles(clientDirectory);
  while (pending.length > 0) {
    const file = pending.pop()!;
    const name = relative(root, file);
    if (visited.has(name)) continue;
    visited.add(name);
    if (forbiddenFiles.some((pattern) => pattern.test(name))) problems.push(`${name} is reached`);
    for (const specifier of importsOf(file)) {
      if (specifier === '<computed dynamic import>' && name === 'src/client/pool-worker.ts') {
        // The worker pool's thread entry imports the user's handler module, named at run time.
      } else if (specifier.startsWith('<')) {
        problems.push(`${name}: ${specifier}`);
      } else if (specifier.startsWith('.')) {
        pending.push(resolve(dirname(file), specifier).replace(/\.js$/, '.ts'));
      } else {
        packages.add(specifier);
        if (forbiddenPackages.some((pattern) => pattern.test(specifier)))
          problems.push(`${name} imports ${specifier}`);
      }
    }
  }
  return { visited, packages, problems };
}

test('the import graph of src/client reaches no engine module and no native package', () => {
  const { visited, packages, problems } = clientImportGraph();
  expect(problems).toEqual([]);
  expect([...visited].some((name) => name.startsWith('src/protocol/'))).toBe(true);
  // What the client may use: Node built-ins (its WebSocket is its own), msgpackr, piscina (only for consumer.run({ worker })) and
  // better-sqlite3 (only for sqliteStore opening a path), both loaded on demand: the run-time check below
  // refuses them while the client loads.
  expect([...packages].filter((name) => !name.startsWith('node:')).sort()).toEqual([
    'better-sqlite3',
    'msgpackr',
    'piscina',
  ]);
});

test('the compiled client loads in a fresh process without the forbidden modules', () => {
  // Under node_modules, so that the compiled files resolve `ws` and `msgpackr` from the project.
  const outDir = join(root, 'node_modules', `.spillway-client-isolation-${process.pid}`);
  rmSync(outDir, { recursive: true, force: true });
  mkdirSync(outDir, { recursive: true });
  try {
    // Each file the client's import graph reaches, transpiled alone (no type check: `npm run build`
    // does that; a whole-program emit took most of this test's time).
    const { visited, problems } = clientImportGraph();
    expect(problems).toEqual([]);
    for (const name of visited) {
      const output = ts.transpileModule(readFileSync(join(root, name), 'utf8'), {
        fileName: name,
        compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext },
      });
      const target = join(outDir, name.replace(/\.ts$/, '.js'));
      mkdirSync(dirname(target), { recursive: true });
      writeFileSync(target, output.outputText);
    }
    writeFileSync(join(outDir, 'package.json'), JSON.stringify({ type: 'module' }));
    // A resolve hook that refuses the forbidden modules and records what was loaded.
    writeFileSync(
      join(outDir, 'hooks.mjs'),
      `const forbidden = [/\\/src\\/native\\.js$/, /\\/src\\/(storage|broker|server)\\//, /mmap-io/, /uws/i, /\\.node$/, /piscina/, /better-sqlite3/];
export async function resolve(specifier, context, next) {
  const result = await next(specifier, context);
  if (forbidden.some((pattern) => pattern.test(result.url))) throw new Error('forbidden import: ' + result.url);
  return result;
}`,
    );
    writeFileSync(
      join(outDir, 'register.mjs'),
      "import { register } from 'node:module'; register('./hooks.mjs', import.meta.url);",
    );
    writeFileSync(
      join(outDir, 'main.mjs'),
      `const client = await import('./src/client/index.js');
if (typeof client.Spillway?.connect !== 'function') throw new Error('no Spillway.connect');
if (typeof client.SpillwayError !== 'function') throw new Error('no SpillwayError');
const addons = process.moduleLoadList.filter((name) => /mmap|uws|spillway_native/i.test(name));
if (addons.length > 0) throw new Error('native modules loaded: ' + addons.join(', '));
console.log('client loaded');`,
    );
    const child = spawnSync(process.execPath, ['--import', './register.mjs', 'main.mjs'], {
      cwd: outDir,
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(child.stderr).toBe('');
    expect(child.stdout.trim()).toBe('client loaded');
    expect(child.status).toBe(0);
  } finally {
    rmSync(outDir, { recursive: true, force: true });
  }
});
