/**
 * What a broker is told about its cluster (`--cluster`, `--broker-id`, `--advertise`,
 * `BrokerOptions.cluster`) and the checks of it. No etcd here: the CLI checks its flags with these
 * without loading the etcd client.
 */
import { InvalidArgumentError } from '../../errors.js';
import {
  brokerIdMax,
  clusterSessionTimeoutMsMax,
  clusterSessionTimeoutMsMin,
  portMax,
  replicationFactorMax,
} from '../../limits.js';

export interface ClusterOptions {
  /** `etcd://host:port[,host:port...]`. */
  etcd: string;
  /** This broker's id in the cluster, an integer in [0, 2^31). */
  brokerId: number;
  /** The ws:// (or wss://) URL other brokers and clients reach this broker at. */
  advertise: string;
  /** Several clusters may share one etcd: keys live under `/spillway/<name>/`. Default 'default'. */
  name?: string;
  /** The session (lease) TTL, rounded up to whole seconds. Default 6000 ms. */
  sessionTimeoutMs?: number;
  /**
   * replicationFactor of the internal state topics (`__consumer_offsets`), 1..replicationFactorMax.
   * Default 3: their partition is assigned, and groups served, once that many brokers are live.
   */
  internalReplicationFactor?: number;
}

/** `etcd://h:p,h2:p2` → `['http://h:p', 'http://h2:p2']`; INVALID_ARGUMENT for anything else. */
export function parseEtcdAddress(address: string): string[] {
  const scheme = 'etcd://';
  if (!address.startsWith(scheme)) {
    throw new InvalidArgumentError(`cluster address must look like etcd://host:port, got '${address}'`);
  }
  const hosts = address.slice(scheme.length).split(',');
  return hosts.map((hostPort) => {
    const match = /^([a-zA-Z0-9.-]+|\[[0-9a-fA-F:]+\]):([0-9]{1,5})$/.exec(hostPort);
    const port = match === null ? Number.NaN : Number(match[2]);
    if (match === null || port < 1 || port > portMax) {
      throw new InvalidArgumentError(
        `cluster address must list host:port pairs (etcd://host:port[,host:port...]), got '${hostPort}' in '${address}'`,
      );
    }
    return `http://${match[1]}:${port}`;
  });
}

const clusterNamePattern = /^[a-zA-Z0-9._-]{1,64}$/;

/** Checks the options a user gives (CLI, BrokerOptions.cluster); INVALID_ARGUMENT naming the field. */
export function validateClusterOptions(options: ClusterOptions): void {
  if (typeof options.etcd !== 'string' || !options.etcd.startsWith('etcd://')) {
    throw new InvalidArgumentError(
      `cluster.etcd must look like etcd://host:port, got '${String(options.etcd)}'`,
    );
  }
  parseEtcdAddress(options.etcd); // host:port pairs with ports in range
  const { brokerId } = options;
  if (
    typeof brokerId !== 'number' ||
    !Number.isSafeInteger(brokerId) ||
    brokerId < 0 ||
    brokerId > brokerIdMax
  ) {
    throw new InvalidArgumentError(
      `cluster.brokerId must be an integer in [0, ${brokerIdMax}], got ${String(brokerId)}`,
    );
  }
  let advertised: URL | undefined;
  try {
    advertised = new URL(options.advertise);
  } catch {
    advertised = undefined;
  }
  if (advertised === undefined || (advertised.protocol !== 'ws:' && advertised.protocol !== 'wss:')) {
    throw new InvalidArgumentError(
      `cluster.advertise must be a ws:// or wss:// URL, got '${String(options.advertise)}'`,
    );
  }
  if (options.name !== undefined && !clusterNamePattern.test(options.name)) {
    throw new InvalidArgumentError(
      `cluster.name must be 1-64 characters of [a-zA-Z0-9._-], got '${options.name}'`,
    );
  }
  const internal = options.internalReplicationFactor;
  if (
    internal !== undefined &&
    (!Number.isSafeInteger(internal) || internal < 1 || internal > replicationFactorMax)
  ) {
    throw new InvalidArgumentError(
      `cluster.internalReplicationFactor must be an integer in [1, ${replicationFactorMax}], got ${String(internal)}`,
    );
  }
  const timeout = options.sessionTimeoutMs;
  if (
    timeout !== undefined &&
    (!Number.isSafeInteger(timeout) ||
      timeout < clusterSessionTimeoutMsMin ||
      timeout > clusterSessionTimeoutMsMax)
  ) {
    throw new InvalidArgumentError(
      `cluster.sessionTimeoutMs must be an integer in [${clusterSessionTimeoutMsMin}, ${clusterSessionTimeoutMsMax}], got ${String(timeout)}`,
    );
  }
}
