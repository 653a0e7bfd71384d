import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { CredentialStore } from '../relay/credentials.js';
import { Relay } from '../relay/relay.js';
import { contactPointMetrics } from '../contact-point/metrics.js';
import { relayMetrics } from '../relay/metrics.js';
import { createLogger } from '../runtime/logger.js';
import type { MetricsServer } from '../runtime/metrics.js';
import { logFormatHelp, logLevel, parseFlags, type Command, type RunContext } from './args.js';
import { historyFlags, historyFlagsHelp, historyOptions, hostContactPoint, launchView, portPolicyFlagsHelp, portPolicyFlags, portPolicyLine, portPolicyOptions, waitForTunnel, type HostedContactPoint } from './contact-point-host.js';
import { writeSecretFile } from './flag-files.js';
import { stopCleanly, watchShutdown } from './lifecycle.js';
import { adminListenFlag, listenFlag } from './listen.js';
import { metricsFlag, metricsFlagsHelp, metricsOptions, startMetrics } from './metrics-flags.js';
import { emit, note, say, selfCommand, shellQuote } from './output.js';
import { refuseIfInUse, resolveStateDir } from './state-dir.js';

/**
 * `contact-point start` (what `npm start` runs): everything on one machine, for trying it out.
 * An embedded relay on loopback with in-memory credentials, a contact point `demo` with a
 * generated credential, and an external credential `demo-sender` written to the state folder,
 * then a banner with the three commands that make a message flow end to end.
 */

export const DEMO_ID = 'demo';
export const DEMO_SENDER = 'demo-sender';
export const DEMO_PEER = 'printer';
export const DEMO_PEER_LISTEN = '127.0.0.1:7901';
export const DEMO_ADMIN_LISTEN = '127.0.0.1:7902';
const TUNNEL_WAIT_MS = 5_000;

const HELP = `Usage: contact-point start [flags]

Runs a self-contained demo on this machine (what \`npm start\` runs):
  - an EMBEDDED relay on 127.0.0.1 (any free port), credentials in memory only: it is not
    reachable from outside and forgets everything when stopped;
  - a contact point "${DEMO_ID}" tunnelled to it, with its peer port and admin endpoint;
  - an external credential "${DEMO_SENDER}", its secret in <state>/${DEMO_SENDER}.credential (mode 0600).
It prints the URLs and three commands to try, then runs until Ctrl-C (SIGINT) or SIGTERM.
Peers and decisions persist in the state folder across runs.

For a real office: \`contact-point relay\` on a public host, \`contact-point serve\` on the LAN.

Port mediation is off until allowed: the port policy is empty by default, so every request
is refused with PERMISSION_DENIED (30). --allow-target / --allow-listen allow some (rule
syntax: contact-point ports policy --help).

Flags:
  --peer-listen HOST:PORT    the peer port (default ${DEMO_PEER_LISTEN})
  --admin-listen HOST:PORT   the admin endpoint (default ${DEMO_ADMIN_LISTEN}; loopback only)
  --admin-listen-any         allow a non-loopback --admin-listen
  --state DIR                state folder (default ~/.contact-point/${DEMO_ID}, or $CONTACT_POINT_STATE)
${portPolicyFlagsHelp(29)}
${historyFlagsHelp(29)}
${metricsFlagsHelp(29)}
                             (one endpoint: the embedded relay's series and the contact point's)
  --log-level LEVEL          debug, info, warn, error or silent (default info); logs go to stderr
${logFormatHelp(29)}
  --json                     print one line {"event":"ready",...} on stdout (with the commands
                             in "next"); the banner then goes to stderr
  -h, --help                 this help
`;

async function run(argv: string[], ctx: RunContext): Promise<number> {
  const { values } = parseFlags({
    args: argv,
    strict: true,
    options: {
      'peer-listen': { type: 'string' },
      'admin-listen': { type: 'string' },
      'admin-listen-any': { type: 'boolean' },
      state: { type: 'string' },
      ...portPolicyOptions,
      ...historyOptions,
      ...metricsOptions,
      'log-level': { type: 'string' },
      json: { type: 'boolean' },
    },
  });
  const peer = listenFlag('--peer-listen', values['peer-listen'], DEMO_PEER_LISTEN);
  const admin = adminListenFlag(values['admin-listen'], DEMO_ADMIN_LISTEN, values['admin-listen-any'] ?? false);
  const logger = createLogger({ level: logLevel('--log-level', values['log-level'] ?? 'info'), format: ctx.logFormat });
  const ports = portPolicyFlags(values);
  const history = historyFlags(values);
  const metrics = metricsFlag(values);
  const stateDir = resolveStateDir('demo', values.state);
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  await refuseIfInUse(stateDir);

  // Fresh credentials every run: the relay keeps them in memory, so nothing old can conflict.
  const credentials = CredentialStore.inMemory();
  const cpSecret = await credentials.add('contact-point', DEMO_ID);
  const senderSecret = await credentials.add('external', DEMO_SENDER);
  const senderFile = join(stateDir, `${DEMO_SENDER}.credential`);
  await writeSecretFile(senderFile, senderSecret);

  const shutdown = watchShutdown();
  const relay = new Relay({ credentials, host: '127.0.0.1', port: 0, logger: logger.child({ part: 'relay' }) });
  let hosted: HostedContactPoint | undefined;
  let metricsServer: MetricsServer | undefined;
  try {
    await relay.start();
    hosted = await hostContactPoint({
      contactPoint: { id: DEMO_ID, relayUrl: relay.url, secret: cpSecret, proxy: null, embeddedRelay: true, ...history, launch: launchView('start', { ...values, 'log-format': ctx.logFormat === 'text' ? undefined : ctx.logFormat }, values['peer-listen'] ?? DEMO_PEER_LISTEN) },
      stateDir,
      peer,
      admin,
      logger,
      ports,
    });
    metricsServer = await startMetrics(metrics, [relayMetrics(relay), contactPointMetrics(hosted.cp)], logger);
    hosted.logRunning();
  } catch (err: unknown) {
    shutdown.dispose();
    await hosted?.stop();
    await relay.stop();
    throw err;
  }
  const up = await Promise.race([waitForTunnel(hosted.cp, TUNNEL_WAIT_MS), shutdown.signal.then(() => false)]);
  if (!up) logger.warn('the tunnel to the embedded relay is not up yet', { error: hosted.cp.gateway.status().lastError });

  const self = selfCommand();
  const state = shellQuote(stateDir);
  const next = [
    `${self} peer join --cp ${hosted.cp.peerPortUrl} --name ${DEMO_PEER} --register --echo --state ${state}`,
    `${self} peers approve ${DEMO_PEER} --state ${state}`,
    `${self} peer send --relay ${relay.url} --id ${DEMO_SENDER} --credential-file ${shellQuote(senderFile)} --to ${DEMO_PEER}@${DEMO_ID} --wait-reply 5000 ${shellQuote('hello printer')}`,
  ];
  const banner = [
    '',
    '==========================================================================',
    '  EMBEDDED LOCAL RELAY — demo only, not reachable from outside',
    '==========================================================================',
    `  relay          ${relay.url}   (in memory; gone when this stops)`,
    `  contact point  ${DEMO_ID}, tunnel ${hosted.cp.gateway.status().state}`,
    `  peer port      ${hosted.cp.peerPortUrl}`,
    `  admin GUI      ${hosted.admin.guiUrl}`,
    `  ports          ${portPolicyLine(hosted.cp.ports.policy.config)}`,
    `  state          ${stateDir}`,
    ...(metricsServer ? [`  metrics        ${metricsServer.url}`] : []),
    '',
    '  Try it, each command in its own terminal:',
    `  1. a LAN peer "${DEMO_PEER}" connects, asks to register, and echoes what it receives:`,
    `     ${next[0]}`,
    '  2. the admin approves it (or click Approve in the admin GUI):',
    `     ${next[1]}`,
    `  3. an outside sender "${DEMO_SENDER}" sends it a message through the relay and the tunnel:`,
    `     ${next[2]}`,
    '',
    '  For a real office: `contact-point relay` on a public host, `contact-point serve` on the LAN.',
    '  Ctrl-C stops the demo.',
    '==========================================================================',
    '',
  ];
  if (values.json) {
    // stderr is the log stream: the banner there names the GUI without its token (the ready event on stdout has it).
    if (ctx.logFormat !== 'json') for (const line of banner) note(line.replace(/#token=\S+/, '#token=… (in the ready event on stdout)'));
    emit('ready', { ...hosted.readyFields(), embeddedRelay: true, senderCredentialFile: senderFile, next, ...(metricsServer ? { metricsUrl: metricsServer.url } : {}) });
  } else if (ctx.logFormat === 'json') {
    logger.info('ready', { ...hosted.logFields(), embeddedRelay: true, senderCredentialFile: senderFile, next, ...(metricsServer ? { metricsUrl: metricsServer.url } : {}) });
  } else {
    for (const line of banner) say(line);
  }

  await shutdown.signal;
  return stopCleanly(
    'demo',
    async () => {
      await metricsServer?.stop();
      await hosted.stop();
      await relay.stop();
    },
    logger,
  );
}

export const startCommand: Command = {
  path: ['start'],
  summary: 'run a local demo: embedded relay + contact point "demo" (what `npm start` runs)',
  help: HELP,
  run,
};
