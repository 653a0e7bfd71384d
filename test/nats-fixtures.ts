/** The relay cluster tests' nats-server processes: the same starter as the cluster benchmark's. */
export { freePort, haveNatsServer, NATS_SERVER, NO_NATS_REASON, startNatsCluster, startNatsServer, type NatsClusterServer, type NatsServer } from '../bench/nats-server.js';
