import { isIP } from 'node:net';
import { MediationError, Operator, PLACEMENT_DIAL_TIMEOUT_MS, placementAllowed } from '../peer/operator.js';
import { MAX_SESSIONS_PER_CREDENTIAL, MAX_STREAMS_PER_EXPOSURE, PING_INTERVAL_MS, PONG_TIMEOUT_MS } from '../protocol/limits.js';
import { Status, statusName } from '../protocol/status.js';
import { createLogger, type Logger } from '../runtime/logger.js';
import { countFlag, hostPort, integer, logFormatHelp, logLevel, name, parseFlags, positionals, required, wsUrl, type Command, type RunContext } from './args.js';
import { CliError, ExitCode, UsageError, type ExitCodeValue } from './errors.js';
import { CREDENTIAL_ENV, readCertificateFile, secretFromFileOrEnv } from './flag-files.js';
import { stopCleanly, watchShutdown } from './lifecycle.js';
import { emit, note, say } from './output.js';
import { connectRefusal, PROXY_FLAGS, proxyChoice, proxyOptions, sessionLimitHint } from './peer-command.js';

/**
 * `contact-point expose CP HOST:PORT`: an operator (an external credential with the `mediate`
 * right) has the relay open a public port whose every connection (TCP) or client (UDP) is
 * carried through the tunnel to HOST:PORT on the LAN behind contact point CP. The exposure
 * belongs to this command's relay session: it ends when the command does.
 */

/** How long expose waits for the relay before giving up. */
export const EXPOSE_CONNECT_TIMEOUT_MS = 15_000;
/**
 * After a reconnect, how long the same public port is retried while the relay still holds it:
 * the old session keeps its exposure until the relay notices that its connection died: at
 * once when it was closed, else when the relay has heard nothing for 2 * PING_INTERVAL_MS +
 * PONG_TIMEOUT_MS (25 s; PROTOCOL.md 12), plus a margin.
 */
export const REEXPOSE_RETRY_MS = 2 * PING_INTERVAL_MS + PONG_TIMEOUT_MS + 5_000;
const REEXPOSE_PAUSE_MS = 1_000;
/** Placement (PROTOCOL.md 17.6): how often expose asks its relay where the office's tunnels are, to follow it when it re-homes. */
export const PLACEMENT_CHECK_MS = 2_000;
/** Placement: an advertised URL that could not be used is not tried again for this long. */
export const PLACEMENT_RETRY_MS = 30_000;

const HELP = `Usage: contact-point expose CP HOST:PORT --relay URL --id NAME (--credential-file FILE | env ${CREDENTIAL_ENV}) [flags]

Makes HOST:PORT on the LAN behind contact point CP reachable at a public port of the relay:
every TCP connection to that port becomes a connection from the contact point to HOST:PORT
(with --udp: every client gets its own UDP port there). Nobody opens a port on the office
firewall. Prints the relay address to use, e.g.
  exposed 192.168.1.20:80 at acme-hq as relay.example.com:40123 (tcp)
and stays in the foreground: the exposure lasts as long as this command's relay session.
Ctrl-C (SIGINT) or SIGTERM ends it and closes the public port; a dropped connection to the
relay is re-established and the exposure renewed (on the same public port when it can be).

Who may do this, on both sides:
  - the relay: the credential NAME needs the mediate right. The relay's admin creates it with
      contact-point relay credential add --kind external --id NAME --rights send,mediate
    (a new secret for NAME). Without it: refused, PERMISSION_DENIED (30).
  - the contact point: its admin must allow the target (and, for --udp, local UDP ports), e.g.
      contact-point serve ... --allow-target 192.168.1.20/32:80
      contact-point serve ... --allow-target 192.168.1.30/32:161 --allow-listen udp:1-65535
    (or contact-point ports policy set on a running one). Empty by default: all refused.
Before it prints the address, expose makes one test connection to HOST:PORT through the
contact point (a UDP exposure only opens and closes a port), so a refusal shows at once
instead of as reset connections later; --no-check skips it.

Arguments:
  CP                       the contact point id at the relay, e.g. acme-hq
  HOST:PORT                the LAN target as the contact point sees it: 192.168.1.20:80,
                           printer.lan:631 (resolved there), [fd00::20]:80; with --udp an IP address

Flags:
  --relay URL              the relay, e.g. wss://relay.example.com/v1 (required); its host is
                           also the host of the printed public address
  --id NAME                the operator credential's id (required)
  --credential-file FILE   its secret (never an argument: ps shows every process's arguments)
  --ca FILE                extra CA certificate (PEM) to trust for a wss:// relay
  --udp                    expose a UDP service instead of TCP
  --public-port N          the relay-side port (default: any free one); refused with
                           PORT_IN_USE (31) when taken
  --max-connections N      at most N TCP connections through the exposure at once (default
                           and cap: the relay's limit, ${MAX_STREAMS_PER_EXPOSURE} unless its --max-expose-connections
                           says otherwise; the contact point has its own, see serve --help)
  --no-check               skip the test connection
  --no-placement           on a relay cluster, keep the exposure on the --relay node even when
                           the office's tunnel is on another one (see "Relay clusters" below)
  --json                   JSON lines on stdout: {"event":"ready","publicHost","publicPort",
                           "address",...} once exposed; {"event":"lost",...} and
                           {"event":"exposed",...} when the relay connection drops and the
                           exposure is renewed; {"event":"warning",...}; {"event":"refused",
                           "code","status","reason"} before a refusal's exit 3;
                           {"event":"connections-refused","count","code","status","reason"}
                           when connections to the exposure were refused (see below)
  --log-level LEVEL        debug, info, warn, error or silent (default warn); logs go to stderr
${logFormatHelp(27)}
${PROXY_FLAGS}
  -h, --help               this help

Connections beyond a limit (--max-connections, the relay's or the contact point's), or that
the contact point cannot make, are reset at once while the others go on; expose then prints
at most one line a second, e.g.
  12 connections refused in the last second: STREAM_LIMIT (38): 4096 connections of this exposure are open

Exits 0 after Ctrl-C/SIGTERM, 3 when the relay or the contact point refuses (the numbered
status is printed: PERMISSION_DENIED, UNKNOWN_CONTACT_POINT, PORT_IN_USE, UNSAFE_TARGET,
SESSION_LIMIT...), 1 when the relay cannot be reached or refuses the credential.

Several commands may use one credential at once: each expose (or peer send, or SDK app) with
the same --id is its own session at the relay, with its own exposure, and a refused one (a
public port in use, say) leaves the others as they are. The relay allows a credential
${MAX_SESSIONS_PER_CREDENTIAL} sessions at once unless its --max-sessions-per-credential says otherwise; one more
is refused with SESSION_LIMIT (115).

The public port listens on the relay's --listen address (or its --expose-host): a relay
behind a reverse proxy or a cloud firewall must let that port through as well.

Relay clusters: when --relay is one node of a relay cluster and CP's tunnel is on another node
that advertises its URL (relay --advertise-url), expose asks the node it reached where CP is,
dials that node itself (a second session with the same credential) and exposes there, so the
bytes go straight to the node holding the tunnel instead of crossing NATS; the printed address
is then that node's host. It asks again every ${PLACEMENT_CHECK_MS / 1000} s: when CP re-homes to another node, the
exposure moves there (a new address is printed, or {"event":"moved",...} with --json;
connections open through the old one are reset, as they are whenever a tunnel moves). A node
that advertises no URL, or whose URL fails to connect (or is not up within ${PLACEMENT_DIAL_TIMEOUT_MS / 1000} s), leaves the
exposure on the --relay node, carried across the cluster as before.

Examples:
  contact-point expose acme-hq 192.168.1.20:80 --relay wss://relay.example.com/v1 --id tech --credential-file tech.credential
  curl http://relay.example.com:40123/
  contact-point expose acme-hq 192.168.1.30:161 --udp --public-port 16161 --relay wss://relay.example.com/v1 --id tech --credential-file tech.credential
`;

interface Target {
  readonly cp: string;
  readonly host: string;
  readonly port: number;
  readonly proto: 'tcp' | 'udp';
}

/** How the exposure ended, when it ends for another reason than a signal. */
interface Ending {
  readonly code: ExitCodeValue;
  readonly message: string;
}

function targetText(t: Target): string {
  return `${t.host.includes(':') ? `[${t.host}]` : t.host}:${t.port}`;
}

/** What to tell the operator about a refusal, beyond its status and reason. */
function refusalHint(e: MediationError, t: Target, id: string, fromCheck: boolean): string | undefined {
  switch (e.code) {
    case Status.PERMISSION_DENIED:
      if (!fromCheck) {
        return `the credential "${id}" lacks the mediate right; the relay's admin grants it with: contact-point relay credential add --kind external --id ${id} --rights send,mediate (which gives it a new secret)`;
      }
      return `the admin of ${t.cp} has not allowed this; on the contact point: contact-point ports policy set ${policyExample(t)} (or serve ${policyExample(t).replace('--target', '--allow-target').replace('--listen', '--allow-listen')})`;
    case Status.UNSAFE_TARGET:
      return `${targetText(t)} is loopback, link-local or similar at ${t.cp}: only a rule naming exactly that address allows it`;
    case Status.UNKNOWN_CONTACT_POINT:
      return `the relay knows no contact point "${t.cp}" (check the id: it is the --id its contact point was started with)`;
    case Status.PORT_IN_USE:
      return 'that public port is taken at the relay; leave --public-port out to get any free one';
    case Status.SESSION_LIMIT:
      return sessionLimitHint(id);
    case Status.NOT_OFFERED:
      return `${t.cp} takes no port requests (its contact point runs with --no-mediation); its admin turns mediation on by starting serve without that flag`;
    default:
      return undefined;
  }
}

function policyExample(t: Target): string {
  const listen = t.proto === 'udp' ? ' --listen udp:1-65535' : '';
  if (t.proto === 'udp' || isIP(t.host) === 0) return `--target ADDRESS/32:${t.port}${listen}`;
  return isIP(t.host) === 6 ? `--target [${t.host}/128]:${t.port}${listen}` : `--target ${t.host}/32:${t.port}${listen}`;
}

/** A refusal: printed (or emitted), exit 3. */
function refused(e: MediationError, t: Target, id: string, json: boolean, fromCheck: boolean): Ending {
  const hint = refusalHint(e, t, id, fromCheck);
  const where = fromCheck ? `${t.cp} refused the test connection to ${targetText(t)}` : `refused`;
  if (json) emit('refused', { code: e.code, status: statusName(e.code), reason: e.reason, ...(fromCheck ? { check: true } : {}), ...(hint ? { hint } : {}) });
  return { code: ExitCode.REFUSED, message: `${where}: ${statusName(e.code)} (${e.code}): ${e.reason}${hint ? `\n  ${hint}` : ''}` };
}

/**
 * One connection through the contact point to the target (TCP), or one UDP port opened and
 * redirected: what every exposed connection will need. Undefined when it worked.
 */
async function check(op: Operator, t: Target): Promise<MediationError | undefined> {
  let portId: number | undefined;
  try {
    const opened = await op.open(t.cp, { proto: t.proto, port: 0 });
    portId = opened.portId;
    if (t.proto === 'udp') {
      await op.redirect(t.cp, portId);
    } else {
      const stream = await op.connect(t.cp, portId, t.host, t.port);
      stream.on('error', () => undefined);
      stream.destroy();
      portId = undefined; // a connected port closes with its connection
    }
    return undefined;
  } catch (err: unknown) {
    if (err instanceof MediationError) return err;
    throw err;
  } finally {
    if (portId !== undefined) await op.close(t.cp, portId).catch(() => undefined);
  }
}

/** Refusals of the test connection that a later connection may not meet: a warning, not the end. */
const PASSING = new Set<number>([Status.CONNECT_FAILED, Status.CONTACT_POINT_OFFLINE, Status.TIMEOUT, Status.PORT_LIMIT, Status.STREAM_LIMIT, Status.PORT_IN_USE]);

function passingWarning(e: MediationError, t: Target): string {
  switch (e.code) {
    case Status.CONNECT_FAILED:
      return `${targetText(t)} does not answer at ${t.cp} now (${e.reason}); connections fail until it does`;
    case Status.CONTACT_POINT_OFFLINE:
      return `${t.cp} is offline now; connections are refused until its tunnel is back`;
    default:
      return `the test connection was refused: ${statusName(e.code)} (${e.code}): ${e.reason}`;
  }
}

async function run(argv: string[], ctx: RunContext): Promise<number> {
  const { values, positionals: given } = parseFlags({
    args: argv,
    strict: true,
    allowPositionals: true,
    options: {
      relay: { type: 'string' },
      id: { type: 'string' },
      'credential-file': { type: 'string' },
      ca: { type: 'string' },
      udp: { type: 'boolean' },
      'public-port': { type: 'string' },
      'max-connections': { type: 'string' },
      'no-check': { type: 'boolean' },
      'no-placement': { type: 'boolean' },
      json: { type: 'boolean' },
      'log-level': { type: 'string' },
      ...proxyOptions,
    },
  });
  const [cpRaw, targetRaw] = positionals(given, ['CP', 'HOST:PORT']);
  const cp = name('CP', cpRaw!);
  const { host, port } = hostPort('HOST:PORT', targetRaw!);
  const proto = values.udp ? 'udp' : 'tcp';
  if (proto === 'udp' && isIP(host) === 0) {
    throw new UsageError(`HOST:PORT "${targetRaw}": a UDP target must be an IP address (datagrams are addressed to it as given), not a name`);
  }
  const target: Target = { cp, host, port, proto };
  const publicPort = values['public-port'] !== undefined ? integer('--public-port', values['public-port'], 1, 65535) : undefined;
  const maxConnections = countFlag('--max-connections', values['max-connections']);
  if (maxConnections !== undefined && proto === 'udp') throw new UsageError('--max-connections is for TCP exposures (a UDP exposure maps up to 256 clients)');
  const relayUrl = wsUrl('--relay', required('--relay', values.relay, "the relay's URL, e.g. wss://relay.example.com/v1"), 'wss://relay.example.com/v1');
  const id = name('--id', required('--id', values.id, 'the id of a credential with the mediate right'));
  const proxy = proxyChoice(values);
  const logger = createLogger({ level: logLevel('--log-level', values['log-level'] ?? 'warn'), format: ctx.logFormat });
  const secret = await secretFromFileOrEnv('--credential-file', values['credential-file'], CREDENTIAL_ENV, (m) => logger.warn(m));
  const ca = values.ca !== undefined ? (await readCertificateFile('--ca', values.ca)).pem : undefined;
  const json = values.json ?? false;
  const publicHost = new URL(relayUrl).hostname;

  const dial = (url: string): Operator => new Operator({ url, name: id, secret, logger, ...proxy, ...(ca ? { ca } : {}) });
  const op = dial(relayUrl);
  const shutdown = watchShutdown();
  const outcome = await expose(op, { placement: !values['no-placement'], dial, target, id, publicPort, maxConnections, publicHost, relayUrl, json, check: !values['no-check'], logger }, shutdown.signal);
  shutdown.dispose();
  const code = await stopCleanly('exposure', () => op.stop(), logger);
  if (outcome === 'signal') return code;
  throw new CliError(outcome.message, outcome.code);
}

interface ExposeRun {
  /** placement (PROTOCOL.md 17.6): follow the office to the relay node holding its tunnel (false: --no-placement) */
  readonly placement: boolean;
  /** a new operator session to another relay node (same credential and options) */
  readonly dial: (url: string) => Operator;
  readonly target: Target;
  readonly id: string;
  readonly publicPort: number | undefined;
  readonly maxConnections: number | undefined;
  readonly publicHost: string;
  readonly relayUrl: string;
  readonly json: boolean;
  readonly check: boolean;
  readonly logger: Logger;
}

/** Runs the exposure until a signal ('signal') or an ending (refusal, lost credential...). */
async function expose(home: Operator, r: ExposeRun, signal: Promise<NodeJS.Signals>): Promise<'signal' | Ending> {
  const t = r.target;
  let end: (e: Ending) => void = () => undefined;
  const ended = new Promise<Ending>((resolve) => (end = resolve));
  const interrupted = signal.then(() => 'signal' as const);

  home.start();
  const connected = await Promise.race([
    home.ready(EXPOSE_CONNECT_TIMEOUT_MS, { failOn: [Status.SESSION_LIMIT] }).then(
      () => undefined,
      (err: unknown): Ending => {
        const refusal = connectRefusal(home.client, [Status.SESSION_LIMIT]);
        if (refusal) return refused(new MediationError(refusal.code, refusal.reason), t, r.id, r.json, false);
        return { code: ExitCode.FAILURE, message: `cannot connect to ${r.relayUrl}: ${(err as Error).message}` };
      },
    ),
    interrupted,
  ]);
  if (connected !== undefined) return connected;

  // Placement (PROTOCOL.md 17.6): `home` is the session to --relay, kept for the whole run; the
  // exposure lives on `active`, which is `home` or a session to the relay node that holds the
  // office's tunnel (its advertised URL), so the exposure's bytes never cross the cluster's engine.
  const place: Placement = { active: home, url: r.relayUrl, node: undefined, homeNode: undefined, placed: new Set(), failedUntil: new Map(), busy: false };
  try {
    return await exposeWith(home, r, place, interrupted, ended, (e) => end(e));
  } finally {
    clearInterval(place.timer);
    await Promise.allSettled([...place.placed].map((o) => o.stop()));
  }
}

/** Where the exposure lives now (see expose()). */
interface Placement {
  active: Operator;
  /** the relay URL of `active` (its host is the public address's) */
  url: string;
  /** the relay node of `active`, when placement told */
  node: string | undefined;
  /** the relay node of the session to --relay, when placement told */
  homeNode: string | undefined;
  /** sessions opened to other nodes (stopped when the exposure leaves them, and at the end) */
  readonly placed: Set<Operator>;
  /** advertised URLs that could not be used, until when they are not tried again */
  readonly failedUntil: Map<string, number>;
  /** a placement check or move is under way */
  busy: boolean;
  timer?: NodeJS.Timeout;
}

interface Exposed {
  readonly exposeId: number;
  readonly publicPort: number;
}

async function exposeWith(home: Operator, r: ExposeRun, place: Placement, interrupted: Promise<'signal'>, ended: Promise<Ending>, end: (e: Ending) => void): Promise<'signal' | Ending> {
  const t = r.target;
  // Declared first: the handlers set up by watch() (also during the first placement) use them.
  let current: Exposed = { exposeId: 0, publicPort: 0 };
  /** the session `current` was made on */
  let exposedOn: Operator = home;
  let hinted = false;
  const watched = new WeakSet<Operator>();
  let lost = false;
  let generation = 0;
  const publicHost = (): string => (place.active === home ? r.publicHost : new URL(place.url).hostname);

  const exposeOn = async (o: Operator, wanted: number | undefined): Promise<Exposed | MediationError> => {
    try {
      return await o.expose(t.cp, t.host, t.port, {
        proto: t.proto,
        ...(wanted !== undefined ? { publicPort: wanted } : {}),
        ...(r.maxConnections !== undefined ? { maxConnections: r.maxConnections } : {}),
      });
    } catch (err: unknown) {
      if (err instanceof MediationError) return err;
      throw err;
    }
  };
  const exposeOnce = (wanted: number | undefined): Promise<Exposed | MediationError> => exposeOn(place.active, wanted);

  /** Which node the exposure should be on, by a locate answer: 'stay', or a node (with its URL unless it is home's). */
  const choose = (l: { node: string; places: { node: string; url?: string }[] }): 'stay' | { node: string; url?: string } => {
    if (l.places.length === 0) return 'stay'; // offline: wherever it comes back, the next check sees it
    if (place.node !== undefined && l.places.some((p) => p.node === place.node)) return 'stay';
    if (l.places.some((p) => p.node === l.node)) return { node: l.node };
    const now = Date.now();
    const there = l.places.find((p) => p.url !== undefined && placementAllowed(r.relayUrl, p.url) && (place.failedUntil.get(p.url) ?? 0) <= now);
    if (there) return there;
    // No node of the office to dial: the exposure goes (back) through the cluster from home.
    return place.active === home ? 'stay' : { node: l.node };
  };

  const placementFailed = (p: { node: string; url: string }, why: string): void => {
    place.failedUntil.set(p.url, Date.now() + PLACEMENT_RETRY_MS);
    if (r.json) emit('placement-failed', { node: p.node, url: p.url, reason: why });
    else note(`cannot use relay node ${p.node} at ${p.url} (${why}); the exposure stays at ${place.url}, its bytes crossing the cluster`);
  };

  /** A placed session given up: no longer counted as placed, and stopped. */
  const leave = (o: Operator): Promise<void> => {
    place.placed.delete(o);
    return o.stop().catch(() => undefined);
  };

  /** A session to the node `p` names, checked to be that node holding the office; undefined when it is not to be had. */
  const dial = async (p: { node: string; url: string }): Promise<Operator | undefined> => {
    const o = r.dial(p.url);
    place.placed.add(o);
    o.start();
    try {
      // The first failed attempt ends it (a refused connection, a refused credential): no waiting for retries.
      let onStatus: ((st: { state: string; lastError?: string | undefined }) => void) | undefined;
      const failed = new Promise<never>((_resolve, reject) => {
        onStatus = (st): void => {
          if (st.state === 'reconnecting' || st.state === 'stopped') reject(new Error(st.lastError ?? 'connection failed'));
        };
        o.client.on('status', onStatus);
      });
      failed.catch(() => undefined);
      try {
        await Promise.race([o.ready(PLACEMENT_DIAL_TIMEOUT_MS, { failOn: [Status.SESSION_LIMIT] }), failed]);
      } finally {
        if (onStatus) o.client.off('status', onStatus);
      }
      // The URL must lead to that very node (not, say, through a load balancer to another).
      const here = o.placementOffered ? await o.locate(t.cp) : undefined;
      if (!here) throw new Error('it does not answer placement');
      if (here.node !== p.node) throw new Error(`it is relay node ${here.node}`);
      if (!here.places.some((x) => x.node === p.node)) throw new Error(`${t.cp}'s tunnel is no longer there`);
      return o;
    } catch (err: unknown) {
      placementFailed(p, (err as Error).message);
      await leave(o);
      return undefined;
    }
  };

  const switchTo = (o: Operator, url: string, node: string | undefined): void => {
    place.active = o;
    place.url = url;
    place.node = node;
    watch(o);
  };

  // Before the first exposure: where is the office?
  if (r.placement && home.placementOffered) {
    const l = await home.locate(t.cp).catch(() => undefined); // a refusal (an unknown office...) comes again from expose
    if (l) {
      place.homeNode = place.node = l.node;
      const target = choose(l);
      // choose() gives a URL only for another node than this one
      if (target !== 'stay' && target.url !== undefined) {
        const o = await dial({ node: target.node, url: target.url });
        if (o) switchTo(o, target.url, target.node);
      }
    }
  }

  let first = await Promise.race([exposeOnce(r.publicPort), interrupted]);
  if (first === 'signal') return first;
  if (first instanceof MediationError && place.active !== home) {
    // Refused on the placed node: home decides (its refusal, or the exposure through the cluster).
    const o = place.active;
    switchTo(home, r.relayUrl, place.homeNode);
    void leave(o);
    first = await Promise.race([exposeOnce(r.publicPort), interrupted]);
    if (first === 'signal') return first;
  }
  if (first instanceof MediationError) return refused(first, t, r.id, r.json, false);

  if (r.check) {
    const problem = await Promise.race([check(place.active, t), interrupted]);
    if (problem === 'signal') return problem;
    if (problem && !PASSING.has(problem.code)) return refused(problem, t, r.id, r.json, true);
    if (problem) warn(r, problem.code, passingWarning(problem, t));
  }

  current = first;
  exposedOn = place.active;
  const fields = (): Record<string, unknown> => ({
    contactPoint: t.cp,
    proto: t.proto,
    target: targetText(t),
    publicHost: publicHost(),
    publicPort: current.publicPort,
    address: `${publicHost()}:${current.publicPort}`,
    exposeId: current.exposeId,
    relayUrl: r.relayUrl,
    // placement: the node (and URL) the exposure is on
    ...(place.node !== undefined ? { node: place.node } : {}),
    exposedVia: place.url,
  });
  const placedLine = (): string[] => (place.active !== home ? [`  on relay node ${place.node ?? '?'} (${place.url}), which holds ${t.cp}'s tunnel: its bytes go straight there`] : []);
  if (r.json) {
    emit('ready', fields());
  } else {
    for (const line of [...exposedLines(t, publicHost(), current.publicPort), ...placedLine()]) say(line);
    say('The exposure lasts while this runs; Ctrl-C ends it.');
  }

  // Connections the relay or the contact point refused: one line per report (the relay sends at most one a second).
  function watch(o: Operator): void {
    if (watched.has(o)) return;
    watched.add(o);
    o.on('refused', (e) => {
      if (o !== place.active || e.portId !== current.exposeId) return;
      const code = e.code ?? Status.INTERNAL;
      const count = e.count ?? 1;
      if (r.json) {
        emit('connections-refused', { count, code, status: statusName(code), reason: e.reason ?? '', exposeId: e.portId });
        return;
      }
      note(`${count} connection${count === 1 ? '' : 's'} refused in the last second: ${statusName(code)} (${code}): ${e.reason ?? ''}`);
      if (code === Status.STREAM_LIMIT && !hinted) {
        hinted = true;
        note(
          "  the limit is expose's --max-connections, the relay's --max-expose-connections(-per-cp), or the contact point's serve --max-exposure-streams / --max-streams",
        );
      }
    });
    if (o === home) return;
    // A placed session that drops (its node died, or refused us): the exposure goes back to home.
    o.client.on('status', (s) => {
      if (o !== place.active || (s.state !== 'reconnecting' && s.state !== 'stopped')) return;
      placementFailed({ node: place.node ?? '?', url: place.url }, `connection lost: ${s.lastError ?? 'closed'}`);
      switchTo(home, r.relayUrl, place.homeNode);
      void leave(o);
      generation++;
      if (r.json) emit('lost', { reason: s.lastError ?? 'connection closed' });
      else note(`connection to the relay node lost (${s.lastError ?? 'closed'}); renewing the exposure at ${r.relayUrl}`);
      if (home.client.currentLink) void renew(generation);
      else lost = true; // home's reconnect renews it
    });
  }
  watch(place.active);

  // The exposure belongs to the relay session: when the connection drops, the relay closes it.
  // Once reconnected (a new session; the old one's public port is free once the relay has
  // noticed that its connection died), renew it.
  const renew = async (gen: number): Promise<void> => {
    // The public port it had, on the same node again; on another node's host --public-port or any free one.
    const wanted = r.publicPort ?? (exposedOn === place.active ? current.publicPort : undefined);
    const until = Date.now() + REEXPOSE_RETRY_MS;
    for (;;) {
      if (gen !== generation) return;
      const again = await exposeOnce(wanted);
      if (gen !== generation) return;
      if (!(again instanceof MediationError)) {
        current = again;
        exposedOn = place.active;
        if (r.json) emit('exposed', fields());
        else note(`exposure renewed: ${publicHost()}:${current.publicPort}`);
        return;
      }
      if (again.code === Status.CONTACT_POINT_OFFLINE && !place.active.client.currentLink) return; // lost again; the next reconnect renews
      if (again.code === Status.PORT_IN_USE && Date.now() < until) {
        await new Promise((resolve) => setTimeout(resolve, REEXPOSE_PAUSE_MS));
        continue;
      }
      if (again.code === Status.PORT_IN_USE && r.publicPort === undefined) {
        const any = await exposeOnce(undefined);
        if (!(any instanceof MediationError)) {
          current = any;
          exposedOn = place.active;
          if (r.json) emit('exposed', fields());
          else for (const line of exposedLines(t, publicHost(), current.publicPort, `exposure renewed on a NEW public port (${wanted} is taken):`)) note(line);
          return;
        }
        end(refused(any, t, r.id, r.json, false));
        return;
      }
      end(refused(again, t, r.id, r.json, false));
      return;
    }
  };
  home.client.on('status', (s) => {
    if (s.state === 'connected') {
      if (!lost) return;
      lost = false;
      if (place.active === home) void renew(++generation);
    } else if (s.state === 'reconnecting' && s.lastErrorCode === Status.REPLACED) {
      // Only a relay older than issue 18 replaces a credential's session with a newer one.
      end({ code: ExitCode.FAILURE, message: `another session with the id "${r.id}" connected to the relay and replaced this one; the exposure ended` });
    } else if (s.state === 'reconnecting' && !lost) {
      lost = true;
      if (place.active !== home) return; // the exposure is on another node's session: it goes on
      generation++;
      if (r.json) emit('lost', { reason: s.lastError ?? 'connection closed' });
      else note(`connection to the relay lost (${s.lastError ?? 'closed'}); the exposure is down until it is back`);
    } else if (s.state === 'stopped' && s.lastError !== undefined) {
      end({ code: ExitCode.FAILURE, message: `the relay refused the credential: ${s.lastError}` });
    }
  });

  /**
   * Placement: the office re-homed (its tunnel is now on another node), or a node that could not
   * be used may be tried again. The exposure moves there (a new public port on that node), then
   * the old one closes: connections open through it are reset, as they are when a tunnel moves.
   */
  const follow = async (): Promise<void> => {
    if (place.busy || !home.placementOffered) return;
    place.busy = true;
    try {
      const l = await home.locate(t.cp).catch(() => undefined);
      if (!l || !home.placementOffered) return;
      place.homeNode = l.node;
      if (place.active === home) place.node = l.node;
      const target = choose(l);
      if (target === 'stay') return;
      const gen = generation;
      const next = target.url === undefined ? home : await dial({ node: target.node, url: target.url });
      if (!next || next === place.active) return;
      const nextUrl = next === home ? r.relayUrl : target.url!;
      const got = gen === generation && next.client.currentLink ? await exposeOn(next, r.publicPort) : undefined;
      if (!got || got instanceof MediationError || gen !== generation) {
        if (next !== home) {
          placementFailed({ node: target.node, url: nextUrl }, got instanceof MediationError ? got.message : 'the exposure changed meanwhile');
          void leave(next);
        }
        return;
      }
      const old = place.active;
      const oldExposure = current;
      const from = `${publicHost()}:${current.publicPort}`;
      switchTo(next, nextUrl, target.node);
      current = got;
      exposedOn = next;
      generation++;
      if (r.json) emit('moved', { ...fields(), from });
      else for (const line of [...exposedLines(t, publicHost(), current.publicPort, `${t.cp} is now on relay node ${target.node}; exposure moved (${from} is closed):`), ...placedLine()]) note(line);
      if (old === home) void home.unexpose(oldExposure.exposeId).catch(() => undefined);
      else {
        void leave(old);
      }
    } finally {
      place.busy = false;
    }
  };
  if (r.placement) place.timer = setInterval(() => void follow(), PLACEMENT_CHECK_MS);

  return Promise.race([interrupted, ended]);
}

function warn(r: ExposeRun, code: number, message: string): void {
  if (r.json) emit('warning', { code, status: statusName(code), message });
  else note(`warning: ${message}`);
}

function exposedLines(t: Target, publicHost: string, publicPort: number, head?: string): string[] {
  const at = `${publicHost}:${publicPort}`;
  const lines = [`${head ? head + ' ' : ''}exposed ${targetText(t)} at ${t.cp} as ${at} (${t.proto})`];
  if (t.proto === 'tcp') {
    lines.push(t.port === 443 || t.port === 8443 ? `  a web page: curl -k https://${at}/` : `  a web page: curl http://${at}/`);
  } else {
    lines.push(`  datagrams sent to ${at} reach ${targetText(t)}, and its answers come back to their sender`);
  }
  return lines;
}

export const exposeCommand: Command = {
  path: ['expose'],
  summary: 'make a LAN target reachable at a public port of the relay (operator, mediate right)',
  help: HELP,
  run,
};
