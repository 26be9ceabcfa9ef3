/**
 * Installs the peer brokers the 'peers' bench suite compares Spillway with, from Debian packages:
 * `nats-server`, `redis-server`, `rabbitmq-server`. Run it as root:
 *
 *     node dist/bench/peers/install.js [nats redis rabbitmq]
 *
 * What is already on the PATH (`command -v`, plus /usr/sbin and /usr/lib/rabbitmq/bin) is left
 * alone. Otherwise `apt-get update` runs once, then `apt-get install -y` non-interactively; when
 * installing all of them together fails, each is retried alone so the report names the one that
 * cannot be installed. Nothing fails silently: every peer ends up 'present', 'installed' or 'failed'
 * with a reason, and the command exits 1 if any failed.
 *
 * The rabbitmq-server package starts a system service (and epmd) on install when the machine allows
 * it. We run our own private instance, so a service that started is stopped and disabled at once:
 * `service rabbitmq-server stop`, then the system epmd only if it was not running before the install.
 * Nothing else is touched.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const peerKinds = ['nats', 'redis', 'rabbitmq'] as const;
export type PeerKind = (typeof peerKinds)[number];

/** The Debian package and the executable that tells it is there, per peer. */
export const peerPackages: Readonly<Record<PeerKind, { debianPackage: string; executable: string }>> = {
  nats: { debianPackage: 'nats-server', executable: 'nats-server' },
  redis: { debianPackage: 'redis-server', executable: 'redis-server' },
  rabbitmq: { debianPackage: 'rabbitmq-server', executable: 'rabbitmq-server' },
};

export type InstallOutcome =
  | { peer: PeerKind; status: 'present' | 'installed'; executable: string }
  | { peer: PeerKind; status: 'failed'; reason: string };

/** apt-get may wait for the dpkg lock or download for a while, but not for ever. */
const aptTimeoutMs = 10 * 60 * 1000;

/** Directories searched besides PATH: a non-login shell of a non-root user may lack the sbin ones. */
const extraDirectories = ['/usr/sbin', '/sbin', '/usr/lib/rabbitmq/bin', '/usr/local/sbin'];

/** The absolute path of `executable`, or undefined when it is not installed. */
export function findExecutable(executable: string): string | undefined {
  const found = spawnSync('sh', ['-c', 'command -v "$0"', executable], { encoding: 'utf8' });
  const onPath = found.status === 0 ? found.stdout.trim() : '';
  if (onPath.startsWith('/')) return onPath;
  for (const directory of extraDirectories) {
    const candidate = `${directory}/${executable}`;
    if (existsSync(candidate)) return candidate;
  }
  return undefined;
}

export interface InstallOptions {
  /** Which peers; default all. */
  peers?: readonly PeerKind[];
  log?: (line: string) => void;
}

export function installPeers(options: InstallOptions = {}): InstallOutcome[] {
  const log = options.log ?? ((line: string) => void process.stderr.write(`${line}\n`));
  const peers = options.peers ?? peerKinds;
  const outcomes = new Map<PeerKind, InstallOutcome>();
  const missing: PeerKind[] = [];
  for (const peer of peers) {
    const executable = findExecutable(peerPackages[peer].executable);
    if (executable === undefined) missing.push(peer);
    else outcomes.set(peer, { peer, status: 'present', executable });
  }
  if (missing.length > 0) {
    const names = missing.map((peer) => peerPackages[peer].debianPackage);
    log(`install: missing ${names.join(', ')}`);
    if (process.getuid?.() !== 0) {
      for (const peer of missing) {
        outcomes.set(peer, {
          peer,
          status: 'failed',
          reason: `not installed, and not root: run 'apt-get install -y ${peerPackages[peer].debianPackage}' as root`,
        });
      }
    } else {
      installMissing(missing, outcomes, log);
    }
  }
  for (const outcome of outcomes.values()) {
    log(
      outcome.status === 'failed'
        ? `install: ${outcome.peer}: FAILED: ${outcome.reason}`
        : `install: ${outcome.peer}: ${outcome.status} (${outcome.executable})`,
    );
  }
  return peers.map((peer) => outcomes.get(peer)!);
}

function installMissing(
  missing: readonly PeerKind[],
  outcomes: Map<PeerKind, InstallOutcome>,
  log: (line: string) => void,
): void {
  const epmdWasRunning = isProcessRunning('epmd');
  const update = apt(['update']);
  if (!update.ok) log(`install: apt-get update failed (${update.reason}); trying the install anyway`);
  const all = apt(['install', '-y', '--no-install-recommends', ...packagesOf(missing)]);
  if (!all.ok) log(`install: installing all together failed (${all.reason}); trying one by one`);
  for (const peer of missing) {
    let failure = all.ok
      ? undefined
      : apt(['install', '-y', '--no-install-recommends', ...packagesOf([peer])]);
    if (failure?.ok) failure = undefined;
    const executable = findExecutable(peerPackages[peer].executable);
    if (executable !== undefined) {
      outcomes.set(peer, { peer, status: 'installed', executable });
    } else {
      const reason =
        failure?.reason ?? `apt-get succeeded but '${peerPackages[peer].executable}' is not found`;
      outcomes.set(peer, { peer, status: 'failed', reason });
    }
  }
  if (missing.includes('rabbitmq')) stopSystemRabbitmq(epmdWasRunning, log);
}

function packagesOf(peers: readonly PeerKind[]): string[] {
  return peers.map((peer) => peerPackages[peer].debianPackage);
}

function apt(args: string[]): { ok: true } | { ok: false; reason: string } {
  const result = spawnSync(
    'apt-get',
    ['-o', 'Dpkg::Options::=--force-confdef', '-o', 'Dpkg::Options::=--force-confold', '-q', ...args],
    {
      encoding: 'utf8',
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: aptTimeoutMs,
      maxBuffer: 64 * 1024 * 1024,
    },
  );
  if (result.error !== undefined) return { ok: false, reason: `apt-get ${args[0]}: ${result.error.message}` };
  if (result.status === 0) return { ok: true };
  const lastLines = `${result.stderr}`.trim().split('\n').slice(-3).join(' / ');
  return { ok: false, reason: `apt-get ${args[0]} exited ${result.status}: ${lastLines}` };
}

/** True when a process whose command name is exactly `name` runs (pgrep -x, read only). */
function isProcessRunning(name: string): boolean {
  return spawnSync('pgrep', ['-x', name], { stdio: 'ignore' }).status === 0;
}

/**
 * The package's service must not run: it would hold port 5672, epmd's 4369 and the node name
 * rabbit@host. Stop it through its init script, disable it at boot, and stop epmd only if the
 * install started it.
 */
function stopSystemRabbitmq(epmdWasRunning: boolean, log: (line: string) => void): void {
  const run = (command: string, args: string[]): string => {
    const result = spawnSync(command, args, { encoding: 'utf8', timeout: 60_000 });
    return `${command} ${args.join(' ')}: ${result.error?.message ?? `exit ${result.status}`}`;
  };
  const serviceRunning = isProcessRunning('beam.smp') && hasSystemRabbitmq();
  if (serviceRunning) {
    log('install: the rabbitmq-server package started its service; stopping it');
    log(`install: ${run('service', ['rabbitmq-server', 'stop'])}`);
  }
  // Disabled at boot whether it started now or not (no-ops where the tool is missing).
  if (findExecutable('update-rc.d') !== undefined)
    log(`install: ${run('update-rc.d', ['rabbitmq-server', 'disable'])}`);
  if (isSystemd()) log(`install: ${run('systemctl', ['disable', '--now', 'rabbitmq-server'])}`);
  if (!epmdWasRunning && isProcessRunning('epmd')) {
    const epmd = findExecutable('epmd');
    if (epmd !== undefined) log(`install: epmd started by the install; ${run(epmd, ['-kill'])}`);
  }
  if (hasSystemRabbitmq()) log('install: WARNING: the system rabbitmq-server still runs');
}

/** The service's node, as the package runs it: user rabbitmq, node name rabbit@<host>. */
function hasSystemRabbitmq(): boolean {
  try {
    const processes = execFileSync('ps', ['-eo', 'user:20,args'], { encoding: 'utf8' });
    return processes
      .split('\n')
      .some((line) => line.startsWith('rabbitmq') && line.includes('beam.smp') && line.includes('rabbit@'));
  } catch {
    return false;
  }
}

function isSystemd(): boolean {
  return existsSync('/run/systemd/system');
}

function isEntryPoint(): boolean {
  const script = process.argv[1];
  if (script === undefined) return false;
  try {
    return realpathSync(script) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  const requested = process.argv.slice(2);
  const unknown = requested.filter((name) => !(peerKinds as readonly string[]).includes(name));
  if (unknown.length > 0) {
    process.stderr.write(`unknown peer ${unknown.join(', ')}; known: ${peerKinds.join(', ')}\n`);
    process.exitCode = 2;
  } else {
    const outcomes = installPeers({ peers: requested.length > 0 ? (requested as PeerKind[]) : peerKinds });
    process.exitCode = outcomes.some((outcome) => outcome.status === 'failed') ? 1 : 0;
  }
}
