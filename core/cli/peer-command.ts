import { join } from 'node:path';
import { PeerIdentity } from '../peer/identity.js';
import { PeerClient, type ExternalPeerOptions, type InboundMessage, type InternalPeerOptions } from '../peer/peer-client.js';
import { parseAddress } from '../protocol/address.js';
import { DeliveryError } from '../protocol/errors.js';
import type { PeerState } from '../protocol/frames.js';
import { MAX_MESSAGE_BYTES, MAX_SESSIONS_PER_CREDENTIAL } from '../protocol/limits.js';
import { Status, statusName } from '../protocol/status.js';
import { createLogger, type Logger } from '../runtime/logger.js';
import { exclusive, integer, logFormatHelp, logLevel, name, oneOf, parseFlags, proxyUrl, required, wsUrl, type Command, type RunContext } from './args.js';
import { KeyPins } from '../peer/key-pins.js';
import { normalizeFingerprint } from '../protocol/key-statement.js';
import { SealKey } from '../protocol/seal.js';
import { CliError, ExitCode, UsageError } from './errors.js';
import { CREDENTIAL_ENV, readCertificateFile, readSecretFile, secretFromFileOrEnv } from './flag-files.js';
import { stopCleanly, watchShutdown } from './lifecycle.js';
import { emit, note, say } from './output.js';
import { resolveStateDir } from './state-dir.js';

/**
 * `contact-point peer join` (an internal peer that stays connected) and `peer send` (one
 * message, as an external peer through the relay or as an internal one through its contact
 * point), on the peer SDK.
 */

/** peer send: how long to keep trying a transiently refused message (offline, congested). */
export const DEFAULT_SEND_DEADLINE_MS = 15_000;
/** peer join --echo: deadline for each echo. */
const ECHO_DEADLINE_MS = 15_000;

export const PROXY_FLAGS = `  --proxy URL              HTTP CONNECT proxy (default: from HTTPS_PROXY / HTTP_PROXY / NO_PROXY)
  --no-proxy               connect directly even when the environment names a proxy`;

/** A PeerClient's options, its message handler added by sendOne. */
type SendOptions = Omit<ExternalPeerOptions, 'onMessage'> | Omit<InternalPeerOptions, 'onMessage'>;

export const proxyOptions = { proxy: { type: 'string' }, 'no-proxy': { type: 'boolean' } } as const;

export function proxyChoice(values: { proxy?: string | undefined; 'no-proxy'?: boolean | undefined }): { proxy?: string | null } {
  exclusive('--proxy', values.proxy !== undefined, '--no-proxy', values['no-proxy'] ?? false);
  if (values['no-proxy']) return { proxy: null };
  return values.proxy !== undefined ? { proxy: proxyUrl('--proxy', values.proxy) } : {};
}

/**
 * The relay refused the client's last attempt with one of `codes` (a numbered refusal the
 * client would otherwise retry slowly): its code and the relay's reason.
 */
export function connectRefusal(client: PeerClient, codes: readonly number[]): { code: number; reason: string } | undefined {
  const { lastErrorCode: code, lastError } = client.status();
  if (code === undefined || !codes.includes(code)) return undefined;
  const prefix = `${statusName(code)}: `;
  return { code, reason: lastError?.startsWith(prefix) ? lastError.slice(prefix.length) : (lastError ?? '') };
}

/** What to tell the user of credential `id` refused with SESSION_LIMIT. */
export function sessionLimitHint(id: string): string {
  return `other commands or programs using the credential "${id}" (expose, peer send, SDK apps) hold all the sessions the relay allows it; end one of them, or ask the relay's admin to raise relay --max-sessions-per-credential`;
}

/** The peer's key: --key FILE, else <state>/peers/NAME.key, created (mode 0600) the first time. */
async function loadIdentity(keyFlag: string | undefined, stateFlag: string | undefined, peerName: string): Promise<{ identity: PeerIdentity; path: string }> {
  const path = keyFlag ?? join(resolveStateDir('peer', stateFlag), 'peers', `${peerName}.key`);
  try {
    return { identity: await PeerIdentity.loadOrCreate(path), path };
  } catch (err: unknown) {
    const label = keyFlag !== undefined ? `--key "${path}"` : `the key file ${path}`;
    throw new CliError(`${label}: not a usable Ed25519 private key (${(err as Error).message})`);
  }
}

/** --seal and --pin, shared by peer join and peer send. */
export const sealFlagOptions = { seal: { type: 'string' }, pin: { type: 'string' } } as const;
export const SEAL_FLAGS = `  --seal MODE              auto (default: sealed for every receiver that has a sealing key),
                           required (never send or accept a plain payload), or off
  --pin FINGERPRINT        the contact point key fingerprint its admin handed over
                           (contact-point fingerprint): another key is refused with KEY_CHANGED.
                           Without it the first key seen is trusted and kept in <state>/pins.json`;

/**
 * The sealing options of a CLI peer (PROTOCOL.md 19.3): its sealing key kept in the state
 * folder (`kind`/NAME.seal.key, 0600: an external peer's address stays bound to it), the pins
 * file, and --pin for `pinDomain` (external: the contact point of --to; internal: its own).
 */
async function sealSetup(
  values: { seal?: string | undefined; pin?: string | undefined; state?: string | undefined },
  kind: 'peers' | 'external',
  peerName: string,
  pinDomain: string | undefined,
): Promise<{ seal: 'auto' | 'required' | 'off'; sealKey: SealKey; pins: KeyPins; contactPointFingerprint?: string }> {
  const seal = values.seal !== undefined ? oneOf('--seal', values.seal, ['auto', 'required', 'off'] as const) : 'auto';
  const pin = values.pin !== undefined ? normalizeFingerprint(values.pin) : undefined;
  if (values.pin !== undefined && pin === undefined) throw new UsageError(`--pin "${values.pin}": expected a key fingerprint, 64 hex digits (contact-point fingerprint prints it)`);
  const dir = resolveStateDir('peer', values.state);
  const keyPath = join(dir, kind, `${peerName}.seal.key`);
  let sealKey: SealKey;
  try {
    sealKey = await SealKey.loadOrCreate(keyPath);
  } catch (err: unknown) {
    throw new CliError(`the sealing key file ${keyPath}: ${(err as Error).message}`);
  }
  const pinsPath = join(dir, 'pins.json');
  let pins: KeyPins;
  try {
    pins = await KeyPins.open(pinsPath, pin !== undefined && kind === 'external' && pinDomain !== undefined ? { [pinDomain]: pin } : {});
  } catch (err: unknown) {
    throw new CliError(`${pinsPath}: ${(err as Error).message}`);
  }
  return { seal, sealKey, pins, ...(pin !== undefined && kind === 'peers' ? { contactPointFingerprint: pin } : {}) };
}

function payloadText(m: InboundMessage): string {
  return m.payload.toString('utf8');
}

// ---- peer join ------------------------------------------------------------------------------

const JOIN_HELP = `Usage: contact-point peer join --cp WSURL --name NAME [flags]

An internal (LAN) peer: connects to a contact point's peer port, proves its key, and stays
connected, printing its registration state as it changes and every message it receives.
With --register it asks the admin to register it. Runs until Ctrl-C (SIGINT) or SIGTERM;
exits 1 if the contact point refuses it for good (e.g. the name belongs to another key).

The name is bound to the key the first time it connects: keep the key file to stay NAME.

Flags:
  --cp WSURL               the contact point's peer port, e.g. ws://192.168.1.10:7901/v1/peer (required)
  --name NAME              this peer's name: its address is NAME@<contact point id> (required)
  --key FILE               its Ed25519 private key (default <state>/peers/NAME.key, created if missing)
  --state DIR              folder for the default key, its sealing key (peers/NAME.seal.key) and
                           pins.json (default ~/.contact-point/peer, or $CONTACT_POINT_STATE)
  --register               ask the admin to register this peer
  --join-code-file FILE    present the join code in FILE: auto-registered if the policy has it
                           (implies --register)
  --echo                   send every message back to its sender
${SEAL_FLAGS}
  --json                   JSON lines on stdout: {"event":"ready","url","name","address"} once connected,
                           {"event":"state","state","address"} (unregistered, pending, registered,
                           revoked), {"event":"message","id","from","payload"} (payload as UTF-8),
                           {"event":"echo",...}, {"event":"connection","state"} on loss/recovery
  --log-level LEVEL        debug, info, warn, error or silent (default warn); logs go to stderr
${logFormatHelp(27)}
${PROXY_FLAGS}
  -h, --help               this help

Example:
  contact-point peer join --cp ws://192.168.1.10:7901/v1/peer --name printer --register --echo
`;

function stateLine(state: PeerState, peerName: string, address: string): string {
  switch (state) {
    case 'unregistered':
      return `registration: unregistered (messages to ${address} are refused; --register asks the admin)`;
    case 'pending':
      return `registration: pending (waiting for the admin: contact-point peers approve ${peerName})`;
    case 'registered':
      return `registration: registered (messages to ${address} are delivered here)`;
    case 'revoked':
      return `registration: revoked (the admin revoked ${peerName}; messages to it are refused)`;
  }
}

async function peerJoin(argv: string[], ctx: RunContext): Promise<number> {
  const { values } = parseFlags({
    args: argv,
    strict: true,
    options: {
      cp: { type: 'string' },
      name: { type: 'string' },
      key: { type: 'string' },
      state: { type: 'string' },
      register: { type: 'boolean' },
      'join-code-file': { type: 'string' },
      echo: { type: 'boolean' },
      json: { type: 'boolean' },
      'log-level': { type: 'string' },
      ...proxyOptions,
      ...sealFlagOptions,
    },
  });
  const url = wsUrl('--cp', required('--cp', values.cp, "the contact point's peer port URL"), 'ws://192.168.1.10:7901/v1/peer');
  const peerName = name('--name', required('--name', values.name, "this peer's name"));
  const proxy = proxyChoice(values);
  const logger = createLogger({ level: logLevel('--log-level', values['log-level'] ?? 'warn'), format: ctx.logFormat });
  const joinCode = values['join-code-file'] !== undefined ? await readSecretFile('--join-code-file', values['join-code-file'], (m) => logger.warn(m)) : undefined;
  const register = (values.register ?? false) || joinCode !== undefined;
  const { identity } = await loadIdentity(values.key, values.state, peerName);
  const sealing = await sealSetup(values, 'peers', peerName, undefined);
  const json = values.json ?? false;

  const client: PeerClient = new PeerClient({
    role: 'peer',
    url,
    name: peerName,
    identity,
    logger,
    ...proxy,
    ...sealing,
    onMessage: (m) => {
      if (json) emit('message', { id: m.id, from: m.from, payload: payloadText(m) });
      else say(`message ${m.id} from ${m.from}: ${payloadText(m)}`);
      if (values.echo) echo(client, m, json);
    },
  });

  const shutdown = watchShutdown();
  let stopping = false;
  let connectedOnce = false;
  let outage = false;
  const rejected = new Promise<string>((resolve) => {
    client.on('status', (s) => {
      if (s.state === 'connected') {
        if (!connectedOnce) {
          connectedOnce = true;
          firstConnect();
        } else if (outage) {
          if (json) emit('connection', { state: 'connected' });
          else note(`reconnected to ${url}`);
        }
        outage = false;
      } else if (s.state === 'reconnecting' && !outage) {
        outage = true;
        if (json) emit('connection', { state: 'reconnecting', error: s.lastError });
        else note(connectedOnce ? `connection lost (${s.lastError ?? 'closed'}); reconnecting` : `cannot reach ${url} yet (${s.lastError ?? 'no answer'}); retrying`);
      } else if (s.state === 'stopped' && s.lastError !== undefined && !stopping) {
        resolve(s.lastError);
      }
    });
  });
  client.on('registration', (state) => {
    if (!connectedOnce) return; // the state at connect time is reported by firstConnect
    if (json) emit('state', { state, address: client.address });
    else say(stateLine(state, peerName, client.address ?? peerName));
  });
  const firstConnect = (): void => {
    const address = client.address ?? peerName;
    const state = client.registration ?? 'unregistered';
    if (json) {
      emit('ready', { url, name: peerName, address });
      emit('state', { state, address });
    } else {
      say(`connected to ${url} as ${address}`);
      say(stateLine(state, peerName, address));
    }
    if (register) client.register(joinCode !== undefined ? { joinCode } : {});
  };

  client.start();
  const outcome = await Promise.race([shutdown.signal.then(() => undefined), rejected]);
  stopping = true;
  shutdown.dispose();
  const code = await stopCleanly('peer', () => client.stop(), logger);
  if (outcome !== undefined) {
    if (json) emit('rejected', { reason: outcome });
    throw new CliError(`the contact point refused ${peerName}: ${outcome}`);
  }
  return code;
}

function echo(client: PeerClient, m: InboundMessage, json: boolean): void {
  client.send(m.from, m.payload, { deadlineMs: ECHO_DEADLINE_MS }).then(
    (r) => {
      if (json) emit('echo', { id: r.id, to: r.to, inReplyTo: m.id, elapsedMs: r.elapsedMs });
      else say(`echoed ${m.id} back to ${m.from} (delivered in ${r.elapsedMs} ms)`);
    },
    (err: unknown) => {
      const e = err instanceof DeliveryError ? `${statusName(err.code)} (${err.code}): ${err.reason}` : (err as Error).message;
      if (json) emit('echo-failed', { inReplyTo: m.id, to: m.from, error: e });
      else note(`echo of ${m.id} to ${m.from} failed: ${e}`);
    },
  );
}

// ---- peer send ------------------------------------------------------------------------------

const SEND_HELP = `Usage: contact-point peer send --to ADDRESS [MESSAGE] (external | internal) [flags]
  external: --relay URL --id NAME (--credential-file FILE | env ${CREDENTIAL_ENV})
  internal: --cp WSURL --name NAME [--key FILE]

Sends one message (MESSAGE, or stdin when it is not given) and waits for the receiver's
acknowledgement. As an external peer it goes through the relay and the tunnel; as an
internal (registered) peer, through its contact point. Prints
  delivered <id> to <address> in <N> ms                  (exit 0)
  refused: <STATUS> (<code>): <reason>                   (on stderr, exit 3)
A transient refusal (peer or contact point offline, congestion) is retried until the deadline.

As an external peer it is a session of its own at the relay: other sessions of the same --id
(an SDK app, an expose, another peer send) go on undisturbed, and the receipt and a reply
come back to this one. The relay allows a credential ${MAX_SESSIONS_PER_CREDENTIAL} sessions at once unless its
--max-sessions-per-credential says otherwise; one more is refused with SESSION_LIMIT (115).

Flags:
  --to ADDRESS             the receiver, NAME@DOMAIN, e.g. printer@acme-hq (required)
  --relay URL              external: the relay, e.g. wss://relay.example.com/v1
  --id NAME                external: the credential's id; the sender is NAME@<relay name>
  --credential-file FILE   external: the credential's secret (never an argument: ps shows argv)
  --ca FILE                external: extra CA certificate (PEM) to trust for a wss:// relay
  --cp WSURL               internal: the contact point's peer port
  --name NAME              internal: this peer's (registered) name
  --key FILE               internal: its key (default <state>/peers/NAME.key)
  --state DIR              folder for the default key, the sealing key (peers/NAME.seal.key,
                           external/ID.seal.key) and pins.json (default ~/.contact-point/peer)
${SEAL_FLAGS}
                           (external: the fingerprint of the contact point in --to)
  --deadline-ms N          give up after N ms (default ${DEFAULT_SEND_DEADLINE_MS})
  --wait-reply MS          after delivery, wait up to MS ms for a message back from the receiver
                           and print it (exit 4 if none comes)
  --json                   JSON lines: {"event":"delivered",...} / {"event":"refused",...} /
                           {"event":"message",...}
  --log-level LEVEL        debug, info, warn, error or silent (default warn); logs go to stderr
${logFormatHelp(27)}
${PROXY_FLAGS}
  -h, --help               this help

Examples:
  contact-point peer send --relay wss://relay.example.com/v1 --id alice --credential-file alice.credential --to printer@acme-hq "hello"
  echo status | contact-point peer send --cp ws://127.0.0.1:7901/v1/peer --name scanner --to printer@acme-hq
`;

async function readStdin(limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of process.stdin) {
    const b = chunk as Buffer;
    chunks.push(b);
    size += b.length;
    if (size > limit) break;
  }
  return Buffer.concat(chunks);
}

async function peerSend(argv: string[], ctx: RunContext): Promise<number> {
  const { values, positionals } = parseFlags({
    args: argv,
    strict: true,
    allowPositionals: true,
    options: {
      to: { type: 'string' },
      relay: { type: 'string' },
      id: { type: 'string' },
      'credential-file': { type: 'string' },
      ca: { type: 'string' },
      cp: { type: 'string' },
      name: { type: 'string' },
      key: { type: 'string' },
      state: { type: 'string' },
      'deadline-ms': { type: 'string' },
      'wait-reply': { type: 'string' },
      json: { type: 'boolean' },
      'log-level': { type: 'string' },
      ...proxyOptions,
      ...sealFlagOptions,
    },
  });
  const to = required('--to', values.to, 'the receiver, NAME@DOMAIN');
  if (!parseAddress(to)) throw new UsageError(`--to "${to}": expected NAME@DOMAIN such as printer@acme-hq (lower-case a-z, 0-9, ".", "_", "-")`);
  if (positionals.length > 1) throw new UsageError(`expected one MESSAGE, got ${positionals.length} words: put the message in quotes`);
  const external = values.relay !== undefined || values.id !== undefined || values['credential-file'] !== undefined || values.ca !== undefined;
  const internal = values.cp !== undefined || values.name !== undefined || values.key !== undefined;
  if (external && internal) {
    throw new UsageError('choose one way to send: as an external peer (--relay, --id, --credential-file) or as an internal peer (--cp, --name, --key)');
  }
  if (!external && !internal) {
    throw new UsageError('say how to connect: as an external peer (--relay URL --id NAME --credential-file FILE) or as an internal peer (--cp WSURL --name NAME)');
  }
  const deadlineMs = values['deadline-ms'] !== undefined ? integer('--deadline-ms', values['deadline-ms'], 1, 3_600_000) : DEFAULT_SEND_DEADLINE_MS;
  const waitReplyMs = values['wait-reply'] !== undefined ? integer('--wait-reply', values['wait-reply'], 1, 3_600_000) : undefined;
  const proxy = proxyChoice(values);
  const logger = createLogger({ level: logLevel('--log-level', values['log-level'] ?? 'warn'), format: ctx.logFormat });
  const json = values.json ?? false;

  let options: SendOptions;
  if (external) {
    const url = wsUrl('--relay', required('--relay', values.relay, "the relay's URL"), 'wss://relay.example.com/v1');
    const id = name('--id', required('--id', values.id, "the external peer's credential id"));
    const secret = await secretFromFileOrEnv('--credential-file', values['credential-file'], CREDENTIAL_ENV, (m) => logger.warn(m));
    const ca = values.ca !== undefined ? (await readCertificateFile('--ca', values.ca)).pem : undefined;
    const sealing = await sealSetup(values, 'external', id, parseAddress(to)!.domain);
    options = { role: 'external', url, name: id, secret, logger, ...proxy, ...(ca ? { ca } : {}), ...sealing };
  } else {
    const url = wsUrl('--cp', required('--cp', values.cp, "the contact point's peer port URL"), 'ws://192.168.1.10:7901/v1/peer');
    const peerName = name('--name', required('--name', values.name, "this peer's name"));
    const { identity } = await loadIdentity(values.key, values.state, peerName);
    const sealing = await sealSetup(values, 'peers', peerName, undefined);
    options = { role: 'peer', url, name: peerName, identity, logger, ...proxy, ...sealing };
  }

  let payload: Buffer;
  if (positionals.length === 1) {
    payload = Buffer.from(positionals[0]!, 'utf8');
  } else if (process.stdin.isTTY) {
    throw new UsageError('no MESSAGE: give it as an argument, or pipe it on stdin');
  } else {
    payload = await readStdin(MAX_MESSAGE_BYTES);
  }

  return sendOne(options, to, payload, { deadlineMs, waitReplyMs, json, logger });
}

async function sendOne(
  options: SendOptions,
  to: string,
  payload: Buffer,
  o: { deadlineMs: number; waitReplyMs: number | undefined; json: boolean; logger: Logger },
): Promise<number> {
  let reply: ((m: InboundMessage) => void) | undefined;
  let replied = false;
  const onMessage = (m: InboundMessage): void => {
    if (o.json) emit('message', { id: m.id, from: m.from, payload: payloadText(m) });
    else say(`${m.from === to ? 'reply' : 'message'} from ${m.from}: ${payloadText(m)}`);
    if (m.from === to) {
      replied = true;
      reply?.(m);
    }
  };
  const client = new PeerClient({ ...options, onMessage });
  client.start();
  try {
    try {
      await client.ready(o.deadlineMs, { failOn: [Status.SESSION_LIMIT] });
    } catch (err: unknown) {
      const refusal = connectRefusal(client, [Status.SESSION_LIMIT]);
      if (!refusal) throw new CliError(`cannot connect to ${options.url}: ${(err as Error).message}`);
      const hint = sessionLimitHint(options.name);
      if (o.json) emit('refused', { to, code: refusal.code, status: statusName(refusal.code), reason: refusal.reason, hint });
      else note(`refused: ${statusName(refusal.code)} (${refusal.code}): ${refusal.reason}\n  ${hint}`);
      return ExitCode.REFUSED;
    }
    try {
      const r = await client.send(to, payload, { deadlineMs: o.deadlineMs });
      if (o.json) emit('delivered', { id: r.id, to: r.to, elapsedMs: r.elapsedMs, attempts: r.attempts });
      else say(`delivered ${r.id} to ${r.to} in ${r.elapsedMs} ms`);
    } catch (err: unknown) {
      if (!(err instanceof DeliveryError)) throw err;
      if (o.json) emit('refused', { id: err.messageId, to, code: err.code, status: statusName(err.code), reason: err.reason });
      else note(`refused: ${statusName(err.code)} (${err.code}): ${err.reason}`);
      return ExitCode.REFUSED;
    }
    if (o.waitReplyMs === undefined || replied) return ExitCode.OK;
    const got = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), o.waitReplyMs);
      reply = () => {
        clearTimeout(timer);
        resolve(true);
      };
    });
    if (got) return ExitCode.OK;
    if (o.json) emit('no-reply', { from: to, waitedMs: o.waitReplyMs });
    else note(`no reply from ${to} within ${o.waitReplyMs} ms`);
    return ExitCode.NO_REPLY;
  } finally {
    await client.stop();
  }
}

export const peerCommands: Command[] = [
  { path: ['peer', 'join'], summary: 'an internal (LAN) peer: register, print and optionally echo messages', help: JOIN_HELP, run: peerJoin },
  { path: ['peer', 'send'], summary: 'send one message, as an external or an internal peer', help: SEND_HELP, run: peerSend },
];
