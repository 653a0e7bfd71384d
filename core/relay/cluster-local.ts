import type { Cluster, RemotePlace } from './cluster.js';
import type { ExternalSession, SessionRegistry, TunnelSession } from './sessions.js';

/**
 * The single relay: every tunnel and session is in this process's maps, so nothing is ever
 * remote and nothing is forwarded. The default; it loads no cluster engine.
 */
export class LocalCluster implements Cluster {
  readonly node = undefined;
  readonly available = true;

  constructor(private readonly sessions: SessionRegistry) {}

  start(): Promise<void> {
    return Promise.resolve();
  }

  stop(): Promise<void> {
    return Promise.resolve();
  }

  tunnel(cp: string): TunnelSession | RemotePlace | undefined {
    return this.sessions.tunnels.get(cp);
  }

  external(name: string): ExternalSession | RemotePlace | undefined {
    return this.sessions.external(name);
  }

  contestTunnel(): undefined {
    return undefined;
  }

  externalAt(): boolean {
    return false;
  }

  opened(): void {}

  closed(): void {}

  sendToTunnel(): void {
    throw new Error('a single relay has no other node to forward to');
  }

  sendToNode(): void {
    throw new Error('a single relay has no other node to forward to');
  }

  answer(): void {
    throw new Error('a single relay has no other node to answer');
  }

  view(): undefined {
    return undefined;
  }
}
