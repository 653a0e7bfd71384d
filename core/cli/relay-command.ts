import { isIP } from 'node:net';
import { join } from 'node:path';
import { CREDENTIALS_FILE, CredentialStore } from '../relay/credentials.js';
import {
  MAX_HTTP_CONNECTIONS,
  MAX_HTTP_CONNECTIONS_PER_ADDRESS,
  MAX_PENDING_HELLOS,
  MAX_PENDING_HELLOS_PER_ADDRESS,
  MAX_SESSIONS_PER_CREDENTIAL,
  MAX_STREAMS_PER_CONTACT_POINT,
  MAX_STREAMS_PER_EXPOSURE,
  RELAY_RATE_PER_SENDER,
} from '../protocol/limits.js';
import { RelayAdminServer } from '../relay/admin-server.js';
import { Relay } from '../relay/relay.js';
import { primeAllocatorOnBulk } from '../runtime/allocator.js';
import { gcOnMainThread, youngGenerationSetting } from '../runtime/gc.js';
import { createLogger } from '../runtime/logger.js';
import { NODE_ID_PATTERN, NODE_ID_RULE, type Cluster } from '../relay/cluster.js';
import { MAX_ADVERTISE_URL_LENGTH } from '../protocol/frames.js';
import type { SessionRegistry } from '../relay/sessions.js';
import { clusterReplicas, countFlag, exclusive, integer, logFormatHelp, logLevel, name, natsUrls, parseFlags, required, wsUrl, type Command, type RunContext } from './args.js';
import { CliError, UsageError } from './errors.js';
import { readTlsPair } from './flag-files.js';
import { stopCleanly, watchShutdown } from './lifecycle.js';
import { isLoopbackHost, listenError, listenFlag } from './listen.js';
import { guiDir } from './contact-point-host.js';
import { METRICS_MAX_OFFICES, METRICS_MAX_OFFICES_LIMIT, relayMetrics } from '../relay/metrics.js';
import type { MetricsServer } from '../runtime/metrics.js';
import { metricsFlag, metricsFlagsHelp, metricsOptions, startMetrics } from './metrics-flags.js';
import { emit, say } from './output.js';
import { RELAY_ADMIN_FILE, removeRelayAdminFile, resolveStateDir, writeRelayAdminFile } from './state-dir.js';

/** `contact-point relay`: the public relay, until SIGINT/SIGTERM. */

export const DEFAULT_RELAY_LISTEN = '0.0.0.0:7900';
/** Largest --max-sessions-per-credential: each session may queue MAX_BUFFERED_BYTES (8 MiB) at the relay. */
const MAX_SESSIONS_FLAG = 1_024;
/** --rate-per-sender at most: far above what one sender can push through a relay (~100,000/s here) */
const MAX_RATE_PER_SENDER_FLAG = 10_000_000;
/** Largest connection limit the flags accept (each connection holds sockets and buffers). */

const HELP = `Usage: contact-point relay [flags]
       contact-point relay credential add|list|remove [flags]

Runs the public relay. Contact points (their one tunnel each) and external peers (a few
sessions per credential) connect to it with a WebSocket at path /v1: ws://, or wss:// when
given a TLS certificate. It watches
<state>/credentials.json: added, removed and replaced credentials apply within seconds, and
the live sessions of a removed or replaced one are closed.
Runs until Ctrl-C (SIGINT) or SIGTERM, then closes every connection and exits 0.

With --cluster it is one node of a relay cluster: the nodes share credentials and know which
node holds each contact point's tunnel through NATS (see the README, "Running a relay
cluster"). A node that loses NATS closes its tunnels so their contact points re-home.

Flags:
  --cluster URL[,URL]  NATS server(s) of the cluster, e.g. nats://10.0.0.5:4222 (JetStream on):
                       credentials come from the cluster (relay credential ... --cluster), not
                       from <state>/credentials.json; exits 1 when NATS is not reachable
  --node-id ID         this node's id in the cluster (required with --cluster; a-z, 0-9, _, -)
  --cluster-replicas N JetStream replicas of the cluster's buckets when this node creates them
                       (default 1; 3 on a 3-server NATS cluster, so NATS survives losing one)
  --advertise-url URL  where clients reach this node directly, e.g. wss://r2.example.com/v1
                       (needs --cluster): an operator (expose) on another node asking for an
                       office whose tunnel is here is told this URL and dials it, so the
                       exposure's bytes never cross NATS. Default: none (such exposures stay
                       on the node the operator dialled, and their bytes cross NATS)
  --listen HOST:PORT   address and port to listen on (default ${DEFAULT_RELAY_LISTEN}; port 0 = any free port)
  --tls-cert FILE      PEM certificate (chain): serve wss:// instead of ws:// (needs --tls-key)
  --tls-key FILE       PEM private key of --tls-cert
  --expose-host HOST   address the public ports of \`contact-point expose\` listen on (default:
                       the --listen host)
  --no-udp             no UDP service port: mediated datagrams travel inside the tunnels only
                       (by default it is a UDP port with the --listen port's number when free)
  --udp-advertise-port N
                       the UDP port contact points are told to use, when a firewall or NAT maps
                       the UDP service port to another number
  --max-expose-connections N
                       TCP connections one exposure carries at once (default ${MAX_STREAMS_PER_EXPOSURE}); more
                       are reset, logged at warn and reported to the exposure's operator
  --max-expose-connections-per-cp N
                       TCP connections of all exposures of one contact point at once (default
                       ${MAX_STREAMS_PER_CONTACT_POINT})
  --max-sessions-per-credential N
                       sessions one external or operator credential may hold at once (default
                       ${MAX_SESSIONS_PER_CREDENTIAL}): expose commands, SDK apps, peer send; one more is refused with
                       SESSION_LIMIT (115) and the others go on
  --name NAME          the relay's own domain: external peers' addresses end in @NAME, e.g.
                       alice@relay (default relay; no contact point may use this id)
  --max-pending-hellos N
                       connections in their hello at once (default ${MAX_PENDING_HELLOS}); when full, a new
                       one replaces the oldest of the source holding the most
  --max-pending-hellos-per-address N
                       the same per source address (IPv6: per /64; default ${MAX_PENDING_HELLOS_PER_ADDRESS}); raise it
                       when many contact points share one address (a NAT, or a reverse proxy)
  --max-http-connections N
                       connections not yet upgraded to a WebSocket (default ${MAX_HTTP_CONNECTIONS})
  --max-http-connections-per-address N
                       the same per source address (default ${MAX_HTTP_CONNECTIONS_PER_ADDRESS})
  --rate-per-sender N  messages a second one external sender (all sessions of its credential)
                       may send through the relay, with a burst of 2 s worth (default
                       ${RELAY_RATE_PER_SENDER}); beyond it its messages are refused RATE_LIMITED (15) and
                       the SDK sends them again later
${metricsFlagsHelp(23)}
  --metrics-per-office series per connected office too (peers, streams, bytes; 6 each), for the
                       --metrics-max-offices connected longest; the others are counted in
                       contact_point_relay_offices_not_exported
  --metrics-max-offices N
                       offices with per-office series (default ${METRICS_MAX_OFFICES}, at most ${METRICS_MAX_OFFICES_LIMIT})
  --state DIR          folder of credentials.json (default ~/.contact-point/relay,
                       or $CONTACT_POINT_STATE)
  --admin-listen HOST:PORT
                       serve the relay's status (offices, sessions, exposures, recent
                       refusals) and its dashboard there, loopback only, with a random token;
                       <state>/${RELAY_ADMIN_FILE} (mode 0600) holds the URL and token while it runs
                       (contact-point relay status reads it). Off by default
  --log-level LEVEL    debug, info, warn, error or silent (default info); logs go to stderr
${logFormatHelp(23)}
  --json               print one line {"event":"ready","url":...,"name":...} on stdout once listening
  -h, --help           this help

Subcommands:
  status               what a running relay serves at --admin-listen: offices, sessions,
                       exposures, recent refusals
  credential add       create a credential and print its secret, once
  credential list      list credentials: kind, id, rights, created (never secrets)
  credential remove    delete a credential

Examples:
  contact-point relay credential add --kind contact-point --id acme-hq --out acme-hq.credential
  contact-point relay credential add --kind external --id alice --out alice.credential
  contact-point relay credential add --kind external --id tech --rights send,mediate --out tech.credential
  contact-point relay --listen 0.0.0.0:443 --tls-cert fullchain.pem --tls-key privkey.pem
  contact-point relay --admin-listen 127.0.0.1:7903    then: contact-point relay status
`;

async function run(argv: string[], ctx: RunContext): Promise<number> {
  const { values } = parseFlags({
    args: argv,
    strict: true,
    options: {
      listen: { type: 'string' },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      name: { type: 'string' },
      'expose-host': { type: 'string' },
      'no-udp': { type: 'boolean' },
      'udp-advertise-port': { type: 'string' },
      'max-expose-connections': { type: 'string' },
      'max-expose-connections-per-cp': { type: 'string' },
      'max-sessions-per-credential': { type: 'string' },
      'max-pending-hellos': { type: 'string' },
      'max-pending-hellos-per-address': { type: 'string' },
      'max-http-connections': { type: 'string' },
      'max-http-connections-per-address': { type: 'string' },
      'rate-per-sender': { type: 'string' },
      ...metricsOptions,
      'metrics-per-office': { type: 'boolean' },
      'metrics-max-offices': { type: 'string' },
      state: { type: 'string' },
      'admin-listen': { type: 'string' },
      'log-level': { type: 'string' },
      json: { type: 'boolean' },
      cluster: { type: 'string' },
      'node-id': { type: 'string' },
      'cluster-replicas': { type: 'string' },
      'advertise-url': { type: 'string' },
    },
  });
  const servers = values.cluster !== undefined ? natsUrls('--cluster', values.cluster) : undefined;
  if (!servers && values['node-id'] !== undefined) throw new UsageError('--node-id needs --cluster (the NATS servers of the relay cluster)');
  const replicas = clusterReplicas(values['cluster-replicas'], servers !== undefined);
  const nodeId = servers ? required('--node-id', values['node-id'], "this node's id in the cluster, e.g. r1") : undefined;
  if (nodeId !== undefined && !NODE_ID_PATTERN.test(nodeId)) throw new UsageError(`--node-id "${nodeId}": ${NODE_ID_RULE}`);
  const advertiseUrl = values['advertise-url'] !== undefined ? wsUrl('--advertise-url', values['advertise-url'], 'wss://r2.example.com/v1') : undefined;
  if (advertiseUrl !== undefined && !servers) throw new UsageError('--advertise-url needs --cluster: it tells the other nodes of a cluster where clients reach this one');
  if (advertiseUrl !== undefined && (advertiseUrl.length > MAX_ADVERTISE_URL_LENGTH || /\s/.test(advertiseUrl))) {
    throw new UsageError(`--advertise-url: at most ${MAX_ADVERTISE_URL_LENGTH} characters, without spaces`);
  }
  const listen = listenFlag('--listen', values.listen, DEFAULT_RELAY_LISTEN);
  const adminListen = values['admin-listen'] !== undefined ? listenFlag('--admin-listen', values['admin-listen'], '') : undefined;
  if (adminListen && !isLoopbackHost(adminListen.listen.host)) {
    throw new UsageError(
      `--admin-listen "${values['admin-listen']}": ${adminListen.listen.host} is not a loopback address. The status endpoint shows every ` +
        'office, session and address, guarded only by a token over plain http, so it stays on this machine (reach it from elsewhere through an SSH tunnel)',
    );
  }
  const relayName = name('--name', values.name ?? 'relay');
  const exposeHost = values['expose-host'];
  if (exposeHost !== undefined && isIP(exposeHost) === 0) {
    throw new UsageError(`--expose-host "${exposeHost}": expected an IP address of this host, e.g. 0.0.0.0 or 203.0.113.7`);
  }
  exclusive('--no-udp', values['no-udp'] ?? false, '--udp-advertise-port', values['udp-advertise-port'] !== undefined);
  const udpAdvertisePort = values['udp-advertise-port'] !== undefined ? integer('--udp-advertise-port', values['udp-advertise-port'], 1, 65535) : undefined;
  const maxExpose = countFlag('--max-expose-connections', values['max-expose-connections']);
  const maxExposePerCp = countFlag('--max-expose-connections-per-cp', values['max-expose-connections-per-cp']);
  const maxSessions = countFlag('--max-sessions-per-credential', values['max-sessions-per-credential'], MAX_SESSIONS_FLAG);
  const ratePerSender = countFlag('--rate-per-sender', values['rate-per-sender'], MAX_RATE_PER_SENDER_FLAG);
  const caps = {
    maxPendingHellos: countFlag('--max-pending-hellos', values['max-pending-hellos']) ?? MAX_PENDING_HELLOS,
    maxPendingHellosPerAddress: countFlag('--max-pending-hellos-per-address', values['max-pending-hellos-per-address']) ?? MAX_PENDING_HELLOS_PER_ADDRESS,
  };
  const http = {
    maxConnections: countFlag('--max-http-connections', values['max-http-connections']) ?? MAX_HTTP_CONNECTIONS,
    maxConnectionsPerAddress: countFlag('--max-http-connections-per-address', values['max-http-connections-per-address']) ?? MAX_HTTP_CONNECTIONS_PER_ADDRESS,
  };
  if (caps.maxPendingHellosPerAddress > caps.maxPendingHellos) {
    throw new UsageError(`--max-pending-hellos-per-address ${caps.maxPendingHellosPerAddress} is more than --max-pending-hellos ${caps.maxPendingHellos}`);
  }
  if (http.maxConnectionsPerAddress > http.maxConnections) {
    throw new UsageError(`--max-http-connections-per-address ${http.maxConnectionsPerAddress} is more than --max-http-connections ${http.maxConnections}`);
  }
  const metrics = metricsFlag(values);
  const perOffice = values['metrics-per-office'] ?? false;
  const maxOffices = countFlag('--metrics-max-offices', values['metrics-max-offices'], METRICS_MAX_OFFICES_LIMIT);
  if (!metrics && (perOffice || maxOffices !== undefined)) {
    throw new UsageError(`${perOffice ? '--metrics-per-office' : '--metrics-max-offices'} needs --metrics HOST:PORT (the address to serve metrics on)`);
  }
  if (maxOffices !== undefined && !perOffice) throw new UsageError('--metrics-max-offices needs --metrics-per-office');
  const level = logLevel('--log-level', values['log-level'] ?? 'info');
  const tls = await readTlsPair({ flag: '--tls-cert', file: values['tls-cert'] }, { flag: '--tls-key', file: values['tls-key'] });
  const stateDir = resolveStateDir('relay', values.state);
  const logger = createLogger({ level, format: ctx.logFormat });
  logger.debug('allocator', { glibc_trim: primeAllocatorOnBulk() });
  logger.debug('gc', { threads: gcOnMainThread(), youngSize: youngGenerationSetting() });

  let credentials: CredentialStore;
  let cluster: ((sessions: SessionRegistry) => Cluster) | undefined;
  if (servers && nodeId !== undefined) {
    // Loaded only here: a single relay (and `npm start`'s embedded one) never loads the NATS client.
    const { joinNatsCluster } = await import('../relay/cluster-nats.js');
    try {
      ({ credentials, cluster } = await joinNatsCluster({ servers, node: nodeId, logger, ...(replicas !== undefined ? { replicas } : {}), ...(advertiseUrl !== undefined ? { advertiseUrl } : {}) }));
    } catch (err: unknown) {
      throw new CliError((err as Error).message);
    }
  } else {
    try {
      credentials = await CredentialStore.open(stateDir);
    } catch (err: unknown) {
      throw new CliError(`cannot load the relay's credentials: ${(err as Error).message}`);
    }
  }
  const count = credentials.list().length;
  if (count === 0) {
    logger.warn(`no credentials yet, so nobody can connect; add one with: contact-point relay credential add --kind contact-point --id ID${servers ? ` --cluster ${servers.join(',')}` : ''}`, {
      ...(servers ? { cluster: servers.join(',') } : { file: join(stateDir, CREDENTIALS_FILE) }),
    });
  }

  const relay = new Relay({ credentials, host: listen.listen.host, port: listen.listen.port, name: relayName, logger, ...caps, http, ...(tls ? { tls } : {}), ...(exposeHost !== undefined ? { exposeHost } : {}),
    ...(values['no-udp'] ? { udp: false } : {}),
    ...(udpAdvertisePort !== undefined ? { udpAdvertisePort } : {}),
    ...(maxExpose !== undefined ? { maxExposeConnections: maxExpose } : {}),
    ...(maxExposePerCp !== undefined ? { maxExposeConnectionsPerContactPoint: maxExposePerCp } : {}),
    ...(maxSessions !== undefined ? { maxSessionsPerCredential: maxSessions } : {}),
    ...(ratePerSender !== undefined ? { ratePerSender } : {}),
    ...(cluster ? { cluster } : {}),
  });
  const shutdown = watchShutdown();
  let url: string;
  try {
    url = await relay.start();
  } catch (err: unknown) {
    shutdown.dispose();
    await relay.stop();
    const code = (err as NodeJS.ErrnoException).code;
    if (tls && typeof code === 'string' && code.startsWith('ERR_OSSL')) {
      throw new CliError(`--tls-cert/--tls-key: cannot use them: ${(err as Error).message}`);
    }
    throw listenError(err, listen);
  }
  let metricsServer: MetricsServer | undefined;
  try {
    metricsServer = await startMetrics(metrics, [relayMetrics(relay, { perOffice, ...(maxOffices !== undefined ? { maxOffices } : {}) })], logger);
  } catch (err: unknown) {
    shutdown.dispose();
    await relay.stop();
    throw err;
  }
  let admin: RelayAdminServer | undefined;
  if (adminListen) {
    admin = new RelayAdminServer({ relay, logger: logger.child({ part: 'status' }), host: adminListen.listen.host, port: adminListen.listen.port, staticDir: guiDir() });
    try {
      await admin.start();
      await writeRelayAdminFile(stateDir, { url: admin.url, token: admin.token, dashboardUrl: admin.dashboardUrl, pid: process.pid });
    } catch (err: unknown) {
      shutdown.dispose();
      await admin.stop();
      await metricsServer?.stop();
      await relay.stop();
      const code = (err as NodeJS.ErrnoException).code;
      throw code === 'EADDRINUSE' || code === 'EACCES' || code === 'EADDRNOTAVAIL' ? listenError(err, adminListen) : new CliError(`cannot write ${join(stateDir, RELAY_ADMIN_FILE)}: ${(err as Error).message}`);
    }
  }
  const udpPort = relay.udp?.port;
  const ready = { url, name: relayName, stateDir, credentials: count, ...(udpPort ? { udpPort } : {}), ...(nodeId !== undefined ? { node: nodeId } : {}), ...(advertiseUrl !== undefined ? { advertiseUrl } : {}), ...(admin ? { statusUrl: admin.url } : {}), ...(metricsServer ? { metricsUrl: metricsServer.url } : {}) };
  if (values.json) emit('ready', { ...ready, ...(admin ? { dashboardUrl: admin.dashboardUrl } : {}) });
  // The log (a journal, a collector) gets the status URL, never the token: that stays in the 0600 file.
  else if (ctx.logFormat === 'json') logger.info('ready', ready);
  else {
    const from = servers ? `the cluster ${servers.join(',')}` : stateDir;
    say(`relay "${relayName}"${nodeId !== undefined ? ` node ${nodeId}` : ''} listening on ${url} (${count} credential${count === 1 ? '' : 's'} from ${from}); Ctrl-C stops it`);
    say(udpPort ? `  UDP service port ${udpPort} (mediated datagrams; let it through the firewall too)` : '  no UDP service port: mediated datagrams travel inside the tunnels');
    if (admin) say(`  dashboard  ${admin.dashboardUrl} (contact-point relay status; token in ${join(stateDir, RELAY_ADMIN_FILE)})`);
    if (metricsServer) say(`  metrics at ${metricsServer.url}`);
  }

  await shutdown.signal;
  return stopCleanly(
    'relay',
    async () => {
      await admin?.stop();
      await metricsServer?.stop();
      await relay.stop();
      if (admin) await removeRelayAdminFile(stateDir);
    },
    logger,
  );
}

/** A connection cap given on the command line, or its default. */
export const relayCommand: Command = {
  path: ['relay'],
  summary: 'run the public relay (ws/wss server)',
  help: HELP,
  run,
};
