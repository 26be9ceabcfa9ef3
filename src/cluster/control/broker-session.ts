/**
 * A broker's etcd session (docs/CLUSTER.md, "Sessions"): a lease of `ttlSeconds`, kept alive by the
 * etcd3 client (a keep-alive every TTL/3), and the broker's registration `brokers/<id>` attached to
 * it, created only if absent. When etcd deletes the lease (expired, revoked) or the client could not
 * renew it for twice its TTL, `onLost` is called once; the session is then dead and the owner opens a
 * new one. A registration held by another live lease is BROKER_ID_IN_USE — unless it is this
 * process's own previous lease (`previousLease`), which is revoked first.
 */
import type { Lease, Namespace } from 'etcd3';
import { BrokerIdInUseError, ClusterUnavailableError } from '../../errors.js';
import { brokerKey, decodeBroker, encodeRecord } from './cluster-records.js';
import { etcdCall } from './etcd-call.js';

/** Registration transactions refused in a row (the key expiring in between) before giving up. */
const registerAttemptsMax = 8;

export interface BrokerSessionOptions {
  brokerId: number;
  url: string;
  ttlSeconds: number;
  nowMs: () => number;
  /** The lease of this process's previous session, if any (its registration may still be there). */
  previousLease?: string;
  onLost: (error: Error) => void;
}

export class BrokerSession {
  private lost = false;

  private constructor(
    private readonly lease: Lease,
    readonly leaseId: string,
  ) {}

  static async open(namespace: Namespace, options: BrokerSessionOptions): Promise<BrokerSession> {
    const lease = namespace.lease(options.ttlSeconds);
    let session: BrokerSession | undefined;
    lease.on('lost', (error) => {
      if (session === undefined || session.lost) return;
      session.lost = true;
      options.onLost(error);
    });
    try {
      const leaseId = await etcdCall('grant a session lease', () => lease.grant());
      session = new BrokerSession(lease, leaseId);
      const key = brokerKey(options.brokerId);
      const value = encodeRecord({
        brokerId: options.brokerId,
        url: options.url,
        registeredAtMs: options.nowMs(),
      });
      let registered = false;
      for (let attempt = 0; attempt < registerAttemptsMax && !registered; attempt++) {
        const response = await etcdCall(`register ${key}`, () =>
          namespace.if(key, 'Create', '==', 0).then(namespace.put(key).value(value).lease(leaseId)).commit(),
        );
        if (response.succeeded) {
          registered = true;
          break;
        }
        const existing = await etcdCall(`read ${key}`, () => namespace.get(key).exec());
        const kv = existing.kvs[0];
        if (kv === undefined) continue; // expired in between: try again
        if (attempt === 0 && options.previousLease !== undefined && kv.lease === options.previousLease) {
          await etcdCall('revoke the previous session lease', () =>
            namespace.leaseClient.leaseRevoke({ ID: options.previousLease }),
          ).catch(() => {}); // already gone: the next attempt finds the key absent
          continue;
        }
        const holder = decodeBroker(kv.value.toString('utf8'));
        throw new BrokerIdInUseError(
          `broker id ${options.brokerId} is registered by a live broker${holder === undefined ? '' : ` advertising ${holder.url}`}; give each broker its own --broker-id (or wait for the old one's session to expire)`,
        );
      }
      if (!registered) {
        throw new ClusterUnavailableError(`${key} kept appearing and vanishing: could not register`);
      }
      return session;
    } catch (error) {
      if (session !== undefined) session.lost = true;
      await lease.revoke().catch(() => {});
      throw error;
    }
  }

  get alive(): boolean {
    return !this.lost;
  }

  /** Ends the session now: etcd deletes the registration (and the controller key, if held) at once. */
  async revoke(): Promise<void> {
    this.lost = true;
    await this.lease.revoke().catch(() => {
      this.lease.release();
    });
  }
}
