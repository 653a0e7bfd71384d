import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { ID_IN_USE_RETRY_MS, MAX_STREAMS_PER_CONTACT_POINT, MAX_STREAMS_PER_EXPOSURE } from '../protocol/limits.js';
import { TIMING_RANGES } from '../protocol/timing.js';
import { contactPointMetrics } from '../contact-point/metrics.js';
import { DIRECT_DIR, DIRECT_DOMAIN } from '../contact-point/direct-mode.js';
import { createLogger } from '../runtime/logger.js';
import type { MetricsServer } from '../runtime/metrics.js';
import { cidr, countFlag, exclusive, integer, logFormatHelp, logLevel, name, parseFlags, proxyUrl, required, wsUrl, type Command, type RunContext } from './args.js';
import {
  floodLimitFlags,
  floodLimitFlagsHelp,
  floodLimitOptions,
  hostContactPoint,
  launchView,
  portPolicyFlagsHelp,
  historyFlags,
  historyFlagsHelp,
  historyOptions,
  portPolicyFlags,
  portPolicyLine,
  portPolicyOptions,
  tunnelLine,
  waitForTunnel,
  wrongRelayUrl,
  type HostedContactPoint,
} from './contact-point-host.js';
import { CliError, UsageError } from './errors.js';
import { CREDENTIAL_ENV, readCertificateFile, readSecretFile, readTlsPair, secretFromFileOrEnv } from './flag-files.js';
import { stopCleanly, watchShutdown } from './lifecycle.js';
import { adminListenFlag, isLoopbackHost, listenFlag } from './listen.js';
import { metricsFlag, metricsFlagsHelp, metricsOptions, startMetrics } from './metrics-flags.js';
import { emit, say } from './output.js';
import { ADMIN_FILE, refuseIfInUse, resolveStateDir } from './state-dir.js';
import { tunnelSlotLines } from '../admin/tunnel-slots.js';

/** `contact-point serve`: the contact point, headless, until SIGINT/SIGTERM. */

export const DEFAULT_PEER_LISTEN = '0.0.0.0:7901';
export const DEFAULT_ADMIN_LISTEN = '127.0.0.1:7902';
/** How long serve waits for the tunnel before printing its ready line anyway (it keeps trying). */
export const TUNNEL_WAIT_MS = 5_000;
/** --id-in-use-retry is in seconds, up to the timing's limit. */
const MAX_ID_IN_USE_RETRY_S = TIMING_RANGES.idInUseRetryMs.max / 1000;

/** `--relay` given more often than this is refused: two tunnels need two nodes, a few spares are plenty. */
export const MAX_RELAY_URLS = 8;

const HELP = `Usage: contact-point serve --relay URL [--relay URL2 ...] --id ID (--credential-file FILE | env ${CREDENTIAL_ENV}) [flags]
       contact-point serve --direct-listen HOST:PORT --direct-cert FILE --direct-key FILE --id ID [flags]

Runs the contact point without a window: one outbound tunnel to the relay, the peer port
for LAN peers, and the admin endpoint (loopback, random token) for the GUI in a browser
and for the peers/policy/status commands. Peers and decisions persist in the state folder.
Runs until Ctrl-C (SIGINT) or SIGTERM.

The credential is never taken as an argument: ps shows every process's arguments to all
users of the machine. Put it in a file (mode 0600) or in ${CREDENTIAL_ENV}.

Direct mode (no relay needed when the office's NAT maps a fixed outside address and port to
this machine: a static NAT or a port forward): --direct-listen opens a second listener where
external peers and operators connect to the contact point itself, with credentials it keeps
(contact-point credential add --state DIR). They speak the relay protocol to it, so the SDK
and the CLI connect with --relay wss://HOST:PORT/v1, and are NAME@direct. With --relay too,
both run at once; without --relay no tunnel is opened and no relay credential is needed.

Port mediation: operators at the relay (contact-point expose, the operator SDK) may ask this
contact point to open ports and to connect to LAN targets, but only within its port policy,
which is EMPTY by default: every such request is refused with PERMISSION_DENIED (30) and
shows in the flow. Allow LAN targets with --allow-target and local ports with --allow-listen
(rule syntax: contact-point ports policy --help). Exposing 192.168.1.20:80 needs
  --allow-target 192.168.1.20/32:80
(a UDP exposure also --allow-listen udp:1-65535; listening on LAN ports needs listen rules)

Flags:
  --relay URL                  the relay, e.g. wss://relay.example.com/v1 (required unless
                               --direct-listen is given). Repeat it (up to ${MAX_RELAY_URLS}) for nodes
                               of a relay cluster: the contact point then holds two tunnels to two
                               different nodes, each trying the URLs in turn; when one node dies
                               the other tunnel carries on. A URL that cannot work (wrong path,
                               scheme or host) ends serve only when every --relay URL is such
  --id ID                      this contact point's id at the relay: its peers are NAME@ID (required)
  --credential-file FILE       the contact point credential's secret (from relay credential add)
  --direct-listen HOST:PORT    direct mode: accept external peers and operators here too
                               (off by default; e.g. 0.0.0.0:7903 behind a port forward)
  --direct-cert FILE           PEM certificate (chain) of the direct listener: wss:// (needs
                               --direct-key)
  --direct-key FILE            PEM private key of --direct-cert
  --direct-insecure            serve plain ws:// on a non-loopback --direct-listen (secrets
                               cross the network in clear: only behind a TLS-terminating proxy)
  --direct-domain NAME         the domain of direct peers' addresses (default ${DIRECT_DOMAIN}: alice@${DIRECT_DOMAIN})
  --peer-listen HOST:PORT      the peer port for LAN peers (default ${DEFAULT_PEER_LISTEN})
  --admin-listen HOST:PORT     the admin endpoint (default ${DEFAULT_ADMIN_LISTEN}; loopback only)
  --admin-listen-any           allow a non-loopback --admin-listen (the token then crosses the
                               network in plain http; prefer an SSH tunnel). It then answers any
                               Host; a browser's Origin must still be the page's own
  --state DIR                  peers, decisions, policy, history and admin.json (default ~/.contact-point/serve,
                               or $CONTACT_POINT_STATE)
  --proxy URL                  HTTP CONNECT proxy to reach the relay through (default: from
                               HTTPS_PROXY / HTTP_PROXY / NO_PROXY)
  --no-proxy                   connect directly even when a proxy is set in the environment
  --ca FILE                    extra CA certificate (PEM) to trust for a wss:// relay
  --auto-approve-subnet CIDR   register peers from this subnet without asking (repeatable;
                               replaces the stored list)
  --join-code-file FILE        register peers that present this join code without asking
  --id-in-use-retry SECONDS    while another running contact point holds this id at the relay
                               (same credential: a copied config, a restored VM), retry after
                               SECONDS to twice that (default ${ID_IN_USE_RETRY_MS / 1000}, 1 to ${MAX_ID_IN_USE_RETRY_S})
${portPolicyFlagsHelp(31)}
  --no-mediation               take no port mediation requests: the hello leaves out the
                               capability "mediation", so the relay refuses operators at once
                               with NOT_OFFERED (39) (default: mediation on, within the policy)
  --max-streams N              TCP streams through this contact point at once, of every kind
                               (default ${MAX_STREAMS_PER_CONTACT_POINT}); more are refused with STREAM_LIMIT (38)
  --max-exposure-streams N     connections of one relay exposure at once (default ${MAX_STREAMS_PER_EXPOSURE});
                               refused ones are counted per port (ports, the GUI's Ports view)
${floodLimitFlagsHelp(31)}
${historyFlagsHelp(31)}
${metricsFlagsHelp(31)}
  --log-level LEVEL            debug, info, warn, error or silent (default info); logs go to stderr
${logFormatHelp(31)}
  --json                       print one line {"event":"ready",...} on stdout once running
  -h, --help                   this help

While it runs, <state>/${ADMIN_FILE} (mode 0600) holds the admin endpoint and token; it is
deleted on exit.

Examples:
  contact-point serve --relay wss://relay.example.com/v1 --id acme-hq --credential-file acme-hq.credential
  contact-point serve --id acme-hq --direct-listen 0.0.0.0:7903 --direct-cert fullchain.pem --direct-key privkey.pem
  contact-point serve --relay wss://relay.example.com/v1 --id acme-hq --credential-file acme-hq.credential \\
    --allow-target 192.168.1.0/24:80,443
`;

async function run(argv: string[], ctx: RunContext): Promise<number> {
  const { values } = parseFlags({
    args: argv,
    strict: true,
    options: {
      relay: { type: 'string', multiple: true },
      id: { type: 'string' },
      'credential-file': { type: 'string' },
      'direct-listen': { type: 'string' },
      'direct-cert': { type: 'string' },
      'direct-key': { type: 'string' },
      'direct-insecure': { type: 'boolean' },
      'direct-domain': { type: 'string' },
      'peer-listen': { type: 'string' },
      'admin-listen': { type: 'string' },
      'admin-listen-any': { type: 'boolean' },
      state: { type: 'string' },
      proxy: { type: 'string' },
      'no-proxy': { type: 'boolean' },
      ca: { type: 'string' },
      'auto-approve-subnet': { type: 'string', multiple: true },
      'join-code-file': { type: 'string' },
      'id-in-use-retry': { type: 'string' },
      'max-streams': { type: 'string' },
      'max-exposure-streams': { type: 'string' },
      ...portPolicyOptions,
      'no-mediation': { type: 'boolean' },
      ...historyOptions,
      ...floodLimitOptions,
      ...metricsOptions,
      'log-level': { type: 'string' },
      json: { type: 'boolean' },
    },
  });
  const directListen = values['direct-listen'] !== undefined ? listenFlag('--direct-listen', values['direct-listen'], '') : undefined;
  const relays =
    values.relay === undefined && directListen
      ? []
      : required('--relay', values.relay, "the relay's URL, e.g. wss://relay.example.com/v1 (or --direct-listen HOST:PORT for direct mode)").map((u) => wsUrl('--relay', u, 'wss://relay.example.com/v1'));
  if (relays.length > MAX_RELAY_URLS) throw new UsageError(`--relay is given ${relays.length} times; at most ${MAX_RELAY_URLS}`);
  if (new Set(relays).size !== relays.length) throw new UsageError('--relay names the same URL twice; give each relay node once');
  const relayUrl = relays[0];
  const relayUrls = relays.slice(1);
  const id = name('--id', required('--id', values.id, "this contact point's id at the relay"));
  const directDomain = values['direct-domain'] !== undefined ? name('--direct-domain', values['direct-domain']) : undefined;
  if (!directListen) {
    for (const f of ['direct-cert', 'direct-key', 'direct-insecure', 'direct-domain'] as const) {
      if (values[f] !== undefined) throw new UsageError(`--${f} needs --direct-listen HOST:PORT`);
    }
  }
  if (directDomain === id) throw new UsageError(`--direct-domain "${directDomain}" is the contact point's own id (its LAN peers are NAME@${id}); choose another`);
  const directTls = await readTlsPair({ flag: '--direct-cert', file: values['direct-cert'] }, { flag: '--direct-key', file: values['direct-key'] });
  if (directListen && !directTls && !values['direct-insecure'] && !isLoopbackHost(directListen.listen.host)) {
    throw new UsageError(
      `--direct-listen "${values['direct-listen']}": ${directListen.listen.host} is not a loopback address, and without --direct-cert/--direct-key ` +
        'external peers\' secrets and messages would cross the network in clear. Give a certificate, or add --direct-insecure (behind a TLS-terminating proxy)',
    );
  }
  if (directTls && values['direct-insecure']) throw new UsageError('--direct-insecure and --direct-cert cannot be used together (with a certificate the listener is wss://)');
  const peer = listenFlag('--peer-listen', values['peer-listen'], DEFAULT_PEER_LISTEN);
  const admin = adminListenFlag(values['admin-listen'], DEFAULT_ADMIN_LISTEN, values['admin-listen-any'] ?? false);
  exclusive('--proxy', values.proxy !== undefined, '--no-proxy', values['no-proxy'] ?? false);
  const proxy = values['no-proxy'] ? null : values.proxy !== undefined ? proxyUrl('--proxy', values.proxy) : undefined;
  const subnets = (values['auto-approve-subnet'] ?? []).map((s) => cidr('--auto-approve-subnet', s));
  const ports = portPolicyFlags(values);
  const idInUseRetryMs = values['id-in-use-retry'] !== undefined ? integer('--id-in-use-retry', values['id-in-use-retry'], 1, MAX_ID_IN_USE_RETRY_S) * 1000 : undefined;
  const maxStreams = countFlag('--max-streams', values['max-streams']);
  const maxExposureStreams = countFlag('--max-exposure-streams', values['max-exposure-streams']);
  const streamLimits = { ...(maxStreams !== undefined ? { maxStreams } : {}), ...(maxExposureStreams !== undefined ? { maxStreamsPerExposure: maxExposureStreams } : {}) };
  const floodLimits = floodLimitFlags(values);
  const history = historyFlags(values);
  const metrics = metricsFlag(values);
  const level = logLevel('--log-level', values['log-level'] ?? 'info');
  const logger = createLogger({ level, format: ctx.logFormat });
  const warn = (msg: string): void => logger.warn(msg);
  if (relayUrl === undefined && values['credential-file'] !== undefined) throw new UsageError('--credential-file is the relay credential: it needs --relay');
  const secret = relayUrl !== undefined ? await secretFromFileOrEnv('--credential-file', values['credential-file'], CREDENTIAL_ENV, warn) : '';
  const ca = values.ca !== undefined ? (await readCertificateFile('--ca', values.ca)).pem : undefined;
  const joinCode = values['join-code-file'] !== undefined ? await readSecretFile('--join-code-file', values['join-code-file'], warn) : undefined;
  const stateDir = resolveStateDir('serve', values.state);
  await refuseIfInUse(stateDir);

  const policy = subnets.length > 0 || joinCode !== undefined ? { ...(subnets.length > 0 ? { subnets } : {}), ...(joinCode !== undefined ? { joinCode } : {}) } : undefined;
  const shutdown = watchShutdown();
  let hosted: HostedContactPoint;
  try {
    hosted = await hostContactPoint({
      contactPoint: {
        id, relayUrl, ...(relayUrls.length > 0 ? { relayUrls } : {}), secret, ...floodLimits,
        ...(directListen ? { direct: { host: directListen.listen.host, port: directListen.listen.port, ...(directTls ? { tls: directTls } : {}), ...(directDomain !== undefined ? { domain: directDomain } : {}) } } : {}), ...history, ...(values['no-mediation'] ? { mediation: false } : {}), ...(proxy !== undefined ? { proxy } : {}), ...(ca ? { ca } : {}), ...(policy ? { policy } : {}), streamLimits,
        ...(idInUseRetryMs !== undefined ? { timing: { idInUseRetryMs } } : {}),
        launch: launchView('serve', { ...values, 'log-format': ctx.logFormat === 'text' ? undefined : ctx.logFormat }, values['peer-listen'] ?? DEFAULT_PEER_LISTEN),
      },
      stateDir,
      peer,
      admin,
      ...(directListen ? { direct: directListen } : {}),
      logger,
      ports,
    });
  } catch (err: unknown) {
    shutdown.dispose();
    throw err;
  }
  let metricsServer: MetricsServer | undefined;
  try {
    metricsServer = await startMetrics(metrics, [contactPointMetrics(hosted.cp)], logger);
  } catch (err: unknown) {
    shutdown.dispose();
    await hosted.stop();
    throw err;
  }
  hosted.logRunning();
  // A relay URL that cannot work (dial-failure.ts `url`) ends serve with what to change,
  // before or after the ready line, as long as the tunnel has never been up.
  const wrongUrl = wrongRelayUrl(hosted.cp);
  const fail = async (why: string): Promise<never> => {
    shutdown.dispose();
    await metricsServer?.stop();
    await hosted.stop();
    throw new CliError(why);
  };
  // Direct mode only: no tunnel to wait for (the direct listener was up when start() returned).
  const up = relayUrl === undefined ? true : await Promise.race([waitForTunnel(hosted.cp, TUNNEL_WAIT_MS), shutdown.signal.then(() => false), wrongUrl.problem]);
  if (typeof up === 'object') return fail(up.why);
  const t = hosted.cp.gateway.status();
  if (!up && relayUrl !== undefined) logger.warn('the tunnel is not up yet; still trying', { relay: relayUrl, error: t.lastError });

  if (values.json) {
    emit('ready', { ...hosted.readyFields(), ...(metricsServer ? { metricsUrl: metricsServer.url } : {}) });
  } else if (ctx.logFormat === 'json') {
    logger.info('ready', { ...hosted.logFields(), ...(metricsServer ? { metricsUrl: metricsServer.url } : {}) });
  } else {
    // The first line says the truth about the tunnel too: running, but refused, is not running.
    say(`contact point "${id}" running${relayUrl === undefined || t.state === 'connected' ? '' : t.lastErrorKind === 'refused' ? ', but the relay refuses its tunnel' : ', the tunnel not up yet'}`);
    say(`  relay       ${relayUrl === undefined ? 'none (direct mode only)' : `${relays.join(', ')} (${tunnelLine(t)})`}`);
    for (const line of tunnelSlotLines(t)) say(`              ${line}`);
    const direct = hosted.cp.direct;
    if (direct) say(`  direct      ${direct.url} (peers NAME@${direct.domain}; ${direct.credentials.count('external')} credentials in ${join(stateDir, DIRECT_DIR)})`);
    say(`  peer port   ${hosted.cp.peerPortUrl}${lanHint(hosted.cp.peerPortUrl)}`);
    say(`  admin GUI   ${hosted.admin.guiUrl}`);
    say(`  ports       ${hosted.cp.ports.offered ? portPolicyLine(hosted.cp.ports.policy.config) : 'port mediation off (--no-mediation): operators are refused NOT_OFFERED'}`);
    say(`  state       ${stateDir} (admin endpoint in ${join(stateDir, ADMIN_FILE)})`);
    if (metricsServer) say(`  metrics     ${metricsServer.url}`);
    say('Ctrl-C stops it.');
  }

  const end = await Promise.race([shutdown.signal, wrongUrl.problem]);
  wrongUrl.dispose();
  if (typeof end === 'object') return fail(end.why);
  return stopCleanly(
    'contact point',
    async () => {
      await metricsServer?.stop();
      await hosted.stop();
    },
    logger,
  );
}

/** For a peer port on every interface (0.0.0.0), the URL LAN peers would use. */
function lanHint(url: string): string {
  const u = new URL(url);
  if (u.hostname !== '0.0.0.0') return '';
  const lan = Object.values(networkInterfaces())
    .flat()
    .find((a) => a !== undefined && a.family === 'IPv4' && !a.internal);
  if (!lan) return '';
  u.hostname = lan.address;
  return ` (LAN peers: ${u.href})`;
}

export const serveCommand: Command = {
  path: ['serve'],
  summary: 'run the contact point headless (tunnel, peer port, admin endpoint)',
  help: HELP,
  run,
};
