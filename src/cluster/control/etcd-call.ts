/**
 * The etcd client of a cluster member and the one place etcd failures become Spillway errors.
 *
 * `connectEtcd` takes the `--cluster` address (`etcd://host:port[,host:port...]`) and builds an
 * etcd3 client whose unary calls carry a deadline of `etcdRequestTimeoutMs` (watches and lease
 * keep-alives are streams and have none) and whose per-host circuit breaker opens after 3 failures
 * in a row for `etcdHostHalfOpenAfterMs` (etcd3's default: 5 s, the delay after an etcd restart
 * before anything is tried again). `etcdCall` runs one call and turns any failure of etcd or
 * of the connection into CLUSTER_UNAVAILABLE (retriable), naming what was being done.
 */
import { ConsecutiveBreaker, circuitBreaker, handleWhen } from 'cockatiel';
import { Etcd3, isRecoverableError } from 'etcd3';
import { ClusterUnavailableError, SpillwayError } from '../../errors.js';
import { etcdHostHalfOpenAfterMs, etcdRequestTimeoutMs } from '../../limits.js';
import { parseEtcdAddress } from './cluster-options.js';

export function connectEtcd(address: string): Etcd3 {
  return new Etcd3({
    hosts: parseEtcdAddress(address),
    defaultCallOptions: (context) =>
      context.isStream ? {} : { deadline: Date.now() + etcdRequestTimeoutMs },
    faultHandling: {
      host: () =>
        circuitBreaker(handleWhen(isRecoverableError), {
          halfOpenAfter: etcdHostHalfOpenAfterMs,
          breaker: new ConsecutiveBreaker(3),
        }),
    },
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
