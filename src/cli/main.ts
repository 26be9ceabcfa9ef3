#!/usr/bin/env node
/**
 * The `spillway` command. Subcommands are added as the broker, client and bench land; until then
 * every command says clearly what is not there yet (exit code 1), and bad usage exits 2.
 */
import { parseArgs } from 'node:util';

const usage = `usage: spillway <command> [options]

commands:
  broker     run the broker in the foreground (not available yet: the broker engine is the next issue)
  bench      run the benchmark suite (same as npm run bench)
  help       show this text
`;

async function main(argv: string[]): Promise<number> {
  const { positionals } = parseArgs({ args: argv, allowPositionals: true, strict: false });
  const command = positionals[0];
  switch (command) {
    case undefined:
    case 'help':
      process.stdout.write(usage);
      return command === undefined ? 2 : 0;
    case 'broker':
      process.stderr.write(
        'spillway: the broker is not available in this version yet (storage engine only); see README.md\n',
      );
      return 1;
    case 'bench': {
      const { runBenchFromCommandLine } = await import('../../bench/main.js');
      return runBenchFromCommandLine(argv.slice(1));
    }
    default:
      process.stderr.write(`spillway: unknown command '${command}'\n${usage}`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`spillway: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
  },
);
