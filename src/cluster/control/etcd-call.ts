/**
 * The etcd client of a cluster member and the one place etcd failures become Spillway errors.
 *
 * `connectEtcd` parses the `--cluster` address (`etcd://host:port[,host:port...]`) and builds an
 * etcd3 client whose unary calls carry a deadline of `etcdRequestTimeoutMs` (watches and lease
 * keep-alives are streams and have none). `etcdCall` runs one call and turns any failure of etcd or
 * of the connection into CLUSTER_UNAVAILABLE (retriable), naming what was being done.
 */
import { Etcd3 } from 'etcd3';
import { ClusterUnavailableError, InvalidArgumentError, SpillwayError } from '../../errors.js';
import { etcdRequestTimeoutMs, portMax } from '../../limits.js';

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

export function connectEtcd(address: string): Etcd3 {
  return new Etcd3({
    hosts: parseEtcdAddress(address),
    defaultCallOptions: (context) =>
      context.isStream ? {} : { deadline: Date.now() + etcdRequestTimeoutMs },
  });
}

export async function etcdCall<T>(what: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    if (error instanceof SpillwayError) throw error;
    const message = error instanceof Error ? error.message : String(error);
    throw new ClusterUnavailableError(`cannot ${what}: etcd: ${message}`, { cause: error });
  }
}
