/** The relay cluster tests' nats-server processes: the same starter as the cluster benchmark's. */
import type { NatsConnection } from '@nats-io/transport-node';
import { connectNats, openClusterCredentials } from '../core/relay/cluster-nats.js';
import type { Logger } from '../core/runtime/logger.js';
import { startNatsServer, type NatsServer } from '../bench/nats-server.js';

export { freePort, freePorts, haveNatsServer, NATS_SERVER, NO_NATS_REASON, startNatsCluster, startNatsServer, type NatsClusterServer, type NatsServer } from '../bench/nats-server.js';

/**
 * A nats-server and the cluster's credentials opened through an admin connection to it (what
 * `relay credential add --cluster` does), each stopped by a `cleanup` the caller runs at its end.
 */
export async function natsWithCredentials(
  cleanup: (fn: () => unknown) => void,
  logger: Logger,
): Promise<{ nats: NatsServer; nc: NatsConnection; admin: Awaited<ReturnType<typeof openClusterCredentials>> }> {
  const nats = await startNatsServer();
  cleanup(() => nats.stop());
  const nc = await connectNats([nats.url], 'test admin', logger);
  const admin = await openClusterCredentials(nc, logger);
  cleanup(async () => {
    admin.stop();
    await nc.close();
  });
  return { nats, nc, admin };
}
