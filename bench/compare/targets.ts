/**
 * Which setting of each system stands for each Spillway durability mode, and what an acknowledgement
 * then guarantees. The mapping is by guarantee, not by name: a peer is placed in the mode whose
 * promise its setting keeps, and where no setting keeps it the cell is 'n/a' with the reason (nothing
 * is stretched to fill a column).
 *
 * | mode     | Spillway | NATS JetStream (file)              | Redis Streams (AOF)  | RabbitMQ          |
 * | none     | none     | default sync (2.9.10: never syncs) | appendfsync no       | n/a               |
 * | interval | 200 ms   | n/a (sync_interval needs >= 2.10)  | appendfsync everysec | n/a               |
 * | always   | always   | sync_interval: always (>= 2.10)    | appendfsync always   | quorum + confirms |
 */
import { spawnSync } from 'node:child_process';
import type { Durability } from '../../src/protocol/types.js';
import { findExecutable } from '../peers/install.js';
import { NatsJetStreamPeer } from '../peers/nats.js';
import type { Peer } from '../peers/peer.js';
import { RabbitmqQuorumPeer } from '../peers/rabbitmq.js';
import { type RedisFsync, RedisStreamsPeer } from '../peers/redis.js';
import { SpillwayPeer } from '../peers/spillway.js';
import type { SystemName } from './options.js';

/** A system at one durability mode: how to make it, or why there is no such setting. */
export interface CompareTarget {
  system: SystemName;
  durability: Durability;
  /** The system's own name for the setting: 'appendfsync everysec'. */
  setting: string;
  /** What an acknowledgement guarantees at this setting. */
  guarantee: string;
  /** Whether the partitions dimension applies (Spillway topics); peers drive one stream or queue. */
  partitioned: boolean;
  /** Makes the peer; undefined when the system has no setting for this mode (see `notApplicable`). */
  create: (() => Peer) | undefined;
  /** Why there is no setting for this mode (create is undefined then). */
  notApplicable?: string;
}

/**
 * Redis with `appendfsync no`: the AOF is written, never fsynced by Redis (the kernel writes it back,
 * ~30 s). bench/peers/redis.ts passes its setting to `--appendfsync` unchanged and checks it with
 * CONFIG GET, so it runs 'no' as is; its type lists only the two settings the 'peers' suite runs.
 */
class RedisNoFsyncPeer extends RedisStreamsPeer {
  override readonly name = 'redis-streams aof (appendfsync no)';
  override readonly durability =
    'appendonly yes, appendfsync no: XADD is answered after write() to the AOF, before any fsync; Redis ' +
    'never fsyncs the AOF, the kernel writes it back (about 30 s for dirty pages by default): a power ' +
    'failure or kernel crash can lose acknowledged writes; a crash of the redis process alone cannot';
  constructor() {
    super('no' as string as RedisFsync);
  }
}

const natsVersionNote = (): string => {
  const executable = findExecutable('nats-server');
  if (executable === undefined) return 'nats-server is not installed';
  const version = spawnSync(executable, ['--version'], { encoding: 'utf8', timeout: 10_000 }).stdout?.trim();
  return version || 'nats-server (version unknown)';
};

const rabbitmqNotApplicable =
  'no RabbitMQ setting acknowledges before the fsync with a durable, replicated-log queue: quorum queues ' +
  'always fsync before the confirm; classic queues or transient messages are a different design ' +
  '(memory first), so this mode is not measured for RabbitMQ';

/** The target of `system` at `durability`. */
export function compareTarget(system: SystemName, durability: Durability): CompareTarget {
  switch (system) {
    case 'spillway': {
      const setting =
        durability === 'interval' ? 'durability interval, flushIntervalMs 200' : `durability ${durability}`;
      const peer = (): Peer => new SpillwayPeer(durability);
      return {
        system,
        durability,
        setting,
        guarantee: new SpillwayPeer(durability).durability,
        partitioned: true,
        create: peer,
      };
    }
    case 'nats': {
      if (durability === 'none') {
        return peerTarget(
          system,
          durability,
          'JetStream file, default sync',
          () => new NatsJetStreamPeer('default'),
        );
      }
      if (durability === 'always') {
        return peerTarget(
          system,
          durability,
          'JetStream file, sync_interval: always',
          () => new NatsJetStreamPeer('always'),
        );
      }
      return {
        system,
        durability,
        setting: 'JetStream file, sync_interval: 200ms',
        guarantee: 'acks after the write to the OS, fsync every interval (nats-server >= 2.10)',
        partitioned: false,
        create: undefined,
        notApplicable:
          `sync_interval needs nats-server >= 2.10 (installed: ${natsVersionNote()}), and bench/peers/nats.ts ` +
          'drives only the default and always settings; the default of 2.10+ (2 min) would be no interval peer either',
      };
    }
    case 'redis': {
      const fsync = { none: 'no', interval: 'everysec', always: 'always' }[durability];
      const create = (): Peer =>
        durability === 'none' ? new RedisNoFsyncPeer() : new RedisStreamsPeer(fsync as RedisFsync);
      return peerTarget(system, durability, `AOF, appendfsync ${fsync}`, create);
    }
    case 'rabbitmq': {
      if (durability === 'always') {
        return peerTarget(
          system,
          durability,
          'quorum queue, publisher confirms',
          () => new RabbitmqQuorumPeer(),
        );
      }
      return {
        system,
        durability,
        setting: 'quorum queue, publisher confirms',
        guarantee: new RabbitmqQuorumPeer().durability,
        partitioned: false,
        create: undefined,
        notApplicable: rabbitmqNotApplicable,
      };
    }
  }
}

function peerTarget(
  system: SystemName,
  durability: Durability,
  setting: string,
  create: () => Peer,
): CompareTarget {
  return { system, durability, setting, guarantee: create().durability, partitioned: false, create };
}
