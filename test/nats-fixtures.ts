/** The relay cluster tests' nats-server processes: the same starter as the cluster benchmark's. */
export { freePort, haveNatsServer, NATS_SERVER, NO_NATS_REASON, startNatsServer, type NatsServer } from '../bench/nats-server.js';
