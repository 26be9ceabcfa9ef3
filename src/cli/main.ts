#!/usr/bin/env node
/**
 * The `spillway` command (names fixed in API.md). Expected errors print one line on stderr and exit
 * 1; bad usage prints the usage and exits 2. No stack traces for expected errors.
 */
import { UsageError } from './cli-error.js';

const usage = `usage: spillway <command> [options]

commands:
  broker                       run the broker in the foreground
  topic create|list|describe|delete|add-partitions
  produce TOPIC                one message per stdin line (or --value V)
  consume TOPIC                print messages as JSON lines (--group G --mode group|broadcast)
  group list|describe          consumer groups: members, assignment, committed offsets, lag
  backlog drain SRC            move a group's backlog into a wider topic (--group G --into TMP --partitions N)
  txn list                     open transactions: id, producer group, age, checks made
  delay stats                  delayed messages: pending by horizon, next due
  repair TOPIC PARTITION       set a stopped partition's damaged ranges aside into quarantine/
  doctor                       what the broker found on disk at start, and how to fix each finding
  auth add|hash-token          principals and tokens of an auth file (docs/SECURITY.md)
  bench                        run the benchmark suite (same as npm run bench)
  help                         show this text
  --version                    print the version of spillway

run 'spillway <command> --help' for a command's options`;

type Command = (argv: string[]) => Promise<number>;

async function load(name: string): Promise<{ run: Command; usage: string } | null> {
  switch (name) {
    case 'broker': {
      const module = await import('./commands/broker.js');
      return { run: module.runBroker, usage: module.brokerUsage };
    }
    case 'topic': {
      const module = await import('./commands/topic.js');
      return { run: module.runTopic, usage: module.topicUsage };
    }
    case 'produce': {
      const module = await import('./commands/produce.js');
      return { run: module.runProduce, usage: module.produceUsage };
    }
    case 'consume': {
      const module = await import('./commands/consume.js');
      return { run: module.runConsume, usage: module.consumeUsage };
    }
    case 'txn': {
      const module = await import('./commands/txn.js');
      return { run: module.runTxn, usage: module.txnUsage };
    }
    case 'group': {
      const module = await import('./commands/group.js');
      return { run: module.runGroup, usage: module.groupUsage };
    }
    case 'backlog': {
      const module = await import('./commands/backlog.js');
      return { run: module.runBacklog, usage: module.backlogUsage };
    }
    case 'delay': {
      const module = await import('./commands/delay.js');
      return { run: module.runDelay, usage: module.delayUsage };
    }
    case 'repair': {
      const module = await import('./commands/repair.js');
      return { run: module.runRepair, usage: module.repairUsage };
    }
    case 'doctor': {
      const module = await import('./commands/repair.js');
      return { run: module.runDoctor, usage: module.doctorUsage };
    }
    case 'auth': {
      const module = await import('./commands/auth.js');
      return { run: module.runAuth, usage: module.authUsage };
    }
    case 'bench': {
      const module = await import('../../bench/main.js');
      return { run: module.runBenchFromCommandLine, usage: '' };
    }
    default:
      return null;
  }
}

function isParseArgsError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS');
}

/**
 * A reader that goes away (`spillway consume t | head -1`) closes our stdout: the next write fails
 * with EPIPE, which Node raises as an 'error' event that would otherwise crash with a stack trace.
 * A client command stops at once and quietly, exit 0 (the reader took what it wanted; sends still in
 * flight may or may not be appended, their acknowledgements have nowhere to go). Any other stdout
 * error is exit 1. The broker keeps serving: its output is only the listening line and log lines.
 */
function handleClosedOutput(command: string | undefined): void {
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (command === 'broker') return;
    process.exit(error.code === 'EPIPE' ? 0 : 1);
  });
  process.stderr.on('error', () => undefined); // nowhere left to report it
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  handleClosedOutput(name);
  if (name === undefined || name === 'help' || name === '--help' || name === '-h') {
    process.stdout.write(`${usage}\n`);
    return name === undefined ? 2 : 0;
  }
  if (name === '--version' || name === 'version' || name === '-v') {
    const { readPackageVersion } = await import('../package-version.js');
    process.stdout.write(`spillway ${await readPackageVersion()}\n`);
    return 0;
  }
  const command = await load(name);
  if (command === null) {
    process.stderr.write(`spillway: unknown command '${name}'\n${usage}\n`);
    return 2;
  }
  if (name !== 'bench' && (rest.includes('--help') || rest.includes('-h'))) {
    process.stdout.write(`${command.usage}\n`);
    return 0;
  }
  try {
    return await command.run(rest);
  } catch (error) {
    if (error instanceof UsageError || isParseArgsError(error)) {
      process.stderr.write(`spillway ${name}: ${(error as Error).message}\n${command.usage}\n`);
      return 2;
    }
    const code = (error as { code?: unknown } | null)?.code;
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`spillway ${name}: ${typeof code === 'string' ? `${code}: ` : ''}${message}\n`);
    return 1;
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
