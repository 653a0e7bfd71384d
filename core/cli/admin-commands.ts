import { join } from 'node:path';
import { AdminClient } from '../admin/client.js';
import { AdminError, type PeerView, type PolicyView, type SealView, type Snapshot } from '../admin/contract.js';
import { CONTACT_POINT_KEY_FILE, ContactPointKey } from '../protocol/key-statement.js';
import { floodNotice } from '../admin/flood-notice.js';
import { cidr, exclusive, name, parseFlags, positionals, wsUrl, type Command } from './args.js';
import { CliError, UsageError } from './errors.js';
import { readSecretFile } from './flag-files.js';
import { emit, formatTable, note, say } from './output.js';
import { ADMIN_FILE, processAlive, readAdminFile, resolveStateDir } from './state-dir.js';
import { keepaliveText, tunnelSlotLines } from '../admin/tunnel-slots.js';

/**
 * Admin commands against a running contact point (serve or start): peers, policy, status.
 * They find its admin endpoint in <state>/admin.json, or take --admin WSURL with the token in
 * CONTACT_POINT_ADMIN_TOKEN, and speak the admin contract through AdminClient.
 */

export const ADMIN_TOKEN_ENV = 'CONTACT_POINT_ADMIN_TOKEN';

export const CONNECTION_FLAGS = `  --state DIR      the contact point's state folder, where it keeps admin.json (default
                   ~/.contact-point/serve, or $CONTACT_POINT_STATE; the demo's is ~/.contact-point/demo)
  --admin WSURL    the admin endpoint instead (ws://127.0.0.1:7902/admin), with its token
                   in ${ADMIN_TOKEN_ENV}
  --json           print JSON instead of text
  -h, --help       this help`;

export const connectionOptions = {
  admin: { type: 'string' },
  state: { type: 'string' },
  json: { type: 'boolean' },
} as const;

export interface ConnectionValues {
  readonly admin?: string | undefined;
  readonly state?: string | undefined;
}

async function endpoint(values: ConnectionValues): Promise<{ wsUrl: string; token: string }> {
  if (values.admin !== undefined) {
    const url = wsUrl('--admin', values.admin, 'ws://127.0.0.1:7902/admin');
    const token = process.env[ADMIN_TOKEN_ENV];
    if (!token) throw new UsageError(`--admin needs the admin token in ${ADMIN_TOKEN_ENV} (tokens are never taken as arguments: ps shows them to every user)`);
    return { wsUrl: url, token };
  }
  const dir = resolveStateDir('serve', values.state);
  const path = join(dir, ADMIN_FILE);
  const file = await readAdminFile(dir);
  if (!file) {
    throw new CliError(
      `no running contact point found: ${path} does not exist. Start one (contact-point serve, or start), point at its ` +
        `state folder with --state DIR (the demo's is ~/.contact-point/demo), or give --admin WSURL with ${ADMIN_TOKEN_ENV} set`,
    );
  }
  if (!processAlive(file.pid)) {
    throw new CliError(`${path} names pid ${file.pid}, which is not running: that contact point stopped without cleaning up; start it again`);
  }
  return { wsUrl: file.wsUrl, token: file.token };
}

/** Connects, runs `fn`, always closes. AdminErrors propagate (main prints them, exit 1). */
export async function withAdmin<T>(values: ConnectionValues, fn: (client: AdminClient) => Promise<T>): Promise<T> {
  const { wsUrl: url, token } = await endpoint(values);
  const client = await AdminClient.connect(url, token, { surface: 'cli' });
  try {
    return await fn(client);
  } finally {
    await client.close();
  }
}

// ---- peers ----------------------------------------------------------------------------------

function lan(address: string | undefined): string {
  if (!address) return '-';
  return address.replace(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/i, '$1');
}

function peerLine(p: PeerView): string {
  switch (p.state) {
    case 'registered':
      return `${p.name}: registered${p.admittedBy ? ` (admitted by ${p.admittedBy})` : ''}; messages to ${p.address} are delivered`;
    case 'pending':
      return `${p.name}: pending; waiting for the admin`;
    case 'revoked':
      return `${p.name}: revoked; messages to ${p.address} are refused`;
    case 'unregistered':
      return `${p.name}: unregistered; messages to ${p.address} are refused`;
  }
}

const PEERS_HELP = `Usage: contact-point peers [list] [flags]
       contact-point peers approve|reject|revoke|forget NAME [flags]

Lists the peers a running contact point knows, or decides on one:
  list       name, state, online, LAN address, messages in/out, who admitted it (default)
             A line under the list tells of a registration flood: requests the flood limits
             dropped (serve --help: --max-undecided-per-address, --new-peers-per-minute)
  approve    register NAME: messages to NAME@ID are delivered (also re-admits a revoked peer)
  reject     turn down a pending registration request (NAME becomes unregistered)
  revoke     unregister NAME at once: its session is closed and messages to it are refused
  forget     delete NAME's record and its key binding (the name can then be taken by another key)

Flags:
${CONNECTION_FLAGS}
`;

async function peersList(argv: string[]): Promise<number> {
  const { values } = parseFlags({ args: argv, strict: true, options: connectionOptions });
  const snap = await withAdmin(values, (c) => c.call('snapshot:get', {}));
  if (values.json) {
    say(JSON.stringify(snap.peers));
    return 0;
  }
  const flood = floodNotice(snap.flood, Date.now());
  if (snap.peers.length === 0) {
    note(`no peers yet: a peer appears here when it connects to the peer port ${snap.contactPoint.peerPortUrl}`);
  } else {
    say(
      formatTable(
        ['NAME', 'STATE', 'ONLINE', 'LAN ADDRESS', 'IN', 'OUT', 'ADMITTED BY'],
        snap.peers.map((p) => [p.name, p.state, p.online ? 'yes' : 'no', lan(p.lanAddress), String(p.messagesIn), String(p.messagesOut), p.admittedBy ?? '-']),
      ),
    );
  }
  if (flood) say(flood);
  return 0;
}

type Decision = 'approve' | 'reject' | 'revoke' | 'forget';

function decision(verb: Decision): (argv: string[]) => Promise<number> {
  return async (argv) => {
    const { values, positionals: given } = parseFlags({ args: argv, strict: true, allowPositionals: true, options: connectionOptions });
    const [raw] = positionals(given, ['NAME']);
    const peer = name('NAME', raw!);
    try {
      await withAdmin(values, async (c) => {
        if (verb === 'forget') {
          await c.call('peers:forget', { name: peer });
          if (values.json) emit('forgotten', { name: peer });
          else say(`${peer}: forgotten (record and key binding deleted)`);
          return;
        }
        const view = await c.call(`peers:${verb}`, { name: peer });
        if (values.json) say(JSON.stringify(view));
        else say(peerLine(view));
      });
    } catch (err: unknown) {
      if (err instanceof AdminError && err.code === 'NOT_FOUND') {
        throw new AdminError('NOT_FOUND', `${err.message}: a peer is known once it has connected to the peer port (contact-point peer join)`);
      }
      throw err;
    }
    return 0;
  };
}

// ---- policy ---------------------------------------------------------------------------------

function policyText(p: PolicyView): string {
  return `auto-approve subnets: ${p.subnets.length > 0 ? p.subnets.join(', ') : 'none'}; join code: ${p.joinCode ? 'set' : 'not set'}`;
}

const POLICY_HELP = `Usage: contact-point policy [show] [flags]
       contact-point policy set [--subnet CIDR ... | --clear-subnets] [--join-code-file FILE | --clear-join-code] [flags]

Shows or changes the auto-approval policy: peers connecting from a listed subnet, or
presenting the join code, are registered without waiting for the admin (and show as
admitted by the policy). The join code is stored only as a hash.

Flags of set (what is not mentioned stays as it is):
  --subnet CIDR           auto-approve peers from this subnet (repeatable); replaces the list
  --clear-subnets         remove all subnets
  --join-code-file FILE   set the join code to the first line of FILE
  --clear-join-code       remove the join code

Flags:
${CONNECTION_FLAGS}
`;

async function policyShow(argv: string[]): Promise<number> {
  const { values } = parseFlags({ args: argv, strict: true, options: connectionOptions });
  const snap = await withAdmin(values, (c) => c.call('snapshot:get', {}));
  say(values.json ? JSON.stringify(snap.policy) : policyText(snap.policy));
  return 0;
}

async function policySet(argv: string[]): Promise<number> {
  const { values } = parseFlags({
    args: argv,
    strict: true,
    options: {
      ...connectionOptions,
      subnet: { type: 'string', multiple: true },
      'clear-subnets': { type: 'boolean' },
      'join-code-file': { type: 'string' },
      'clear-join-code': { type: 'boolean' },
    },
  });
  const subnets = values.subnet?.map((s) => cidr('--subnet', s));
  exclusive('--subnet', subnets !== undefined, '--clear-subnets', values['clear-subnets'] ?? false);
  exclusive('--join-code-file', values['join-code-file'] !== undefined, '--clear-join-code', values['clear-join-code'] ?? false);
  if (subnets === undefined && !values['clear-subnets'] && values['join-code-file'] === undefined && !values['clear-join-code']) {
    throw new UsageError('nothing to set: give --subnet CIDR, --clear-subnets, --join-code-file FILE or --clear-join-code');
  }
  const joinCode = values['clear-join-code']
    ? ''
    : values['join-code-file'] !== undefined
      ? await readSecretFile('--join-code-file', values['join-code-file'], note)
      : undefined;
  const view = await withAdmin(values, async (c) => {
    const keep = subnets ?? (values['clear-subnets'] ? [] : (await c.call('snapshot:get', {})).policy.subnets);
    return c.call('policy:set', { subnets: [...keep], ...(joinCode !== undefined ? { joinCode } : {}) });
  });
  say(values.json ? JSON.stringify(view) : policyText(view));
  return 0;
}

// ---- status ---------------------------------------------------------------------------------

export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  const d = Math.floor(s / 86_400);
  const h = Math.floor((s % 86_400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  const parts = d > 0 ? [`${d}d`, `${h}h`] : h > 0 ? [`${h}h`, `${m}m`] : m > 0 ? [`${m}m`, `${s % 60}s`] : [`${s % 60}s`];
  return parts.join(' ');
}

function statusText(snap: Snapshot, now: number): string[] {
  const { contactPoint: cp, tunnel: t, peers, flow } = snap;
  const count = (state: string): number => peers.filter((p) => p.state === state).length;
  const online = peers.filter((p) => p.online).length;
  const tunnel =
    t.state === 'connected'
      ? `connected for ${formatDuration(now - (t.connectedAt ?? now))}, rtt ${t.rttMs !== undefined ? `${Math.round(t.rttMs)} ms` : 'not measured yet'}`
      : `${t.idInUse !== undefined ? 'refused: another instance holds this id; ' : t.lastErrorKind === 'refused' ? 'refused by the relay (see last error); ' : ''}${t.state}${t.nextRetryAt !== undefined ? `, next try in ${formatDuration(t.nextRetryAt - now)}` : ''}; down for ${formatDuration(now - t.stateSince)}`;
  return [
    // Two contact points with one credential: say plainly which one holds the id, before anything else.
    ...(t.idInUse !== undefined ? [`WARNING        another running contact point holds this id at the relay: ${t.idInUse}`, '               stop one of them, or give each its own credential; this one retries slowly'] : []),
    `contact point  ${cp.id} (version ${cp.version}), up ${formatDuration(now - cp.startedAt)}${cp.embeddedRelay ? ' [embedded demo relay]' : ''}`,
    ...(t.relayUrl === ''
      ? ['relay          none (direct mode only)']
      : [
          `relay          ${t.relayUrl}${t.proxy ? ` via proxy ${t.proxy}` : ''}`,
          `tunnel         ${tunnel}${t.node !== undefined ? ` (relay node ${t.node})` : ''}`,
          ...tunnelSlotLines(t).map((line) => `               ${line}`),
          `keepalive      ${keepaliveText(t)}`,
        ]),
    ...(snap.direct
      ? [`direct         ${snap.direct.url}: ${snap.direct.sessions.length} session${snap.direct.sessions.length === 1 ? '' : 's'} (${snap.direct.sessions.map((x) => x.address).join(', ') || 'none'}), ${snap.direct.credentials} credential${snap.direct.credentials === 1 ? '' : 's'}`]
      : []),
    `reconnects     ${t.reconnects}`,
    // Kept after the tunnel recovers, with its time: the cause of the last outage (issue 16, item 9).
    `last error     ${t.lastError !== undefined ? `${t.lastError}${t.lastErrorAt !== undefined ? ` (at ${new Date(t.lastErrorAt).toISOString()}, ${formatDuration(now - t.lastErrorAt)} ago)` : ''}` : 'none since it started'}`,
    `peer port      ${cp.peerPortUrl}`,
    `peers          ${peers.length} known: ${count('registered')} registered, ${count('pending')} pending, ` +
      `${count('revoked')} revoked, ${count('unregistered')} unregistered; ${online} online`,
    ...(floodNotice(snap.flood, now) !== undefined ? [`flood          ${floodNotice(snap.flood, now)}`] : []),
    `policy         ${policyText(snap.policy)}`,
    ...(snap.seal ? [`key            ${snap.seal.fingerprint} (its fingerprint: external peers pin it, peer send --pin)`, `sealing        ${sealText(snap.seal)}`] : []),
    `messages       ${flow.messages} (${flow.delivered} delivered, ${flow.refused} refused)`,
  ];
}

const STATUS_HELP = `Usage: contact-point status [flags]

Shows a running contact point: its tunnel (state, relay URL, uptime, round-trip time,
reconnects, last error), direct mode's listener and sessions when it is on, the peer port, peer counts by state, policy and message totals.

Flags:
${CONNECTION_FLAGS}
`;

async function status(argv: string[]): Promise<number> {
  const { values } = parseFlags({ args: argv, strict: true, options: connectionOptions });
  const snap = await withAdmin(values, (c) => c.call('snapshot:get', {}));
  if (values.json) {
    const { contactPoint, tunnel, policy, flow, peers } = snap; // and snap.direct, when direct mode is on
    const count = (state: string): number => peers.filter((p) => p.state === state).length;
    say(
      JSON.stringify({
        contactPoint,
        uptimeMs: Date.now() - contactPoint.startedAt,
        tunnel,
        ...(snap.direct ? { direct: snap.direct } : {}),
        policy,
        flow,
        ...(snap.flood ? { flood: snap.flood } : {}),
        ...(snap.seal ? { seal: snap.seal } : {}),
        peers: {
          known: peers.length,
          registered: count('registered'),
          pending: count('pending'),
          revoked: count('revoked'),
          unregistered: count('unregistered'),
          online: peers.filter((p) => p.online).length,
        },
      }),
    );
  } else {
    for (const line of statusText(snap, Date.now())) say(line);
  }
  return 0;
}

// ---- sealing --------------------------------------------------------------------------------

function sealText(v: SealView): string {
  const only = v.required ? 'sealed payloads only, for every peer' : v.peers.length > 0 ? `sealed payloads only for ${v.peers.join(', ')}` : 'plain payloads allowed';
  return `${only}; ${v.bindings} external key binding${v.bindings === 1 ? '' : 's'}`;
}

const FINGERPRINT_HELP = `Usage: contact-point fingerprint [--state DIR] [--json]

Prints this contact point's key fingerprint: hand it over with every external credential, so
the peer pins it (contact-point peer send --pin FINGERPRINT, or KeyPins in the SDK). A peer
pinned to it refuses a contact point with another key (KEY_CHANGED) instead of trusting it.

The key is <state>/${CONTACT_POINT_KEY_FILE} (mode 0600), created here or at the first start
if it does not exist yet. It does not need a running contact point.

Flags:
  --state DIR      the contact point's state folder (default ~/.contact-point/serve, or $CONTACT_POINT_STATE)
  --json           {"fingerprint","keyFile"}
  -h, --help       this help
`;

async function fingerprintCommand(argv: string[]): Promise<number> {
  const { values } = parseFlags({ args: argv, strict: true, options: { state: { type: 'string' }, json: { type: 'boolean' } } });
  const path = join(resolveStateDir('serve', values.state), CONTACT_POINT_KEY_FILE);
  let key: ContactPointKey;
  try {
    key = await ContactPointKey.loadOrCreate(path);
  } catch (err: unknown) {
    throw new CliError(`the contact point key ${path}: ${(err as Error).message}`);
  }
  if (values.json) say(JSON.stringify({ fingerprint: key.fingerprint, keyFile: path }));
  else say(key.fingerprint);
  return 0;
}

const SEAL_HELP = `Usage: contact-point seal [show] [flags]
       contact-point seal set [--required | --not-required] [--peer NAME ... | --no-peers] [--forget ADDRESS ...] [flags]

Shows or sets the policy "sealed payloads only" (docs/PROTOCOL.md 19): a plain message through
the contact point is refused SEAL_REQUIRED (22). Office-wide (--required), or for the listed
peers only (what they send and what they receive). The contact point never reads a sealed
payload; it checks the flag and the sender's key.

Flags of set (what is not mentioned stays as it is):
  --required          every message must be sealed
  --not-required      plain messages allowed (except for the listed peers)
  --peer NAME         this peer sends and accepts sealed payloads only (repeatable); replaces the list
  --no-peers          empty the list
  --forget ADDRESS    drop the key bound to this external address (repeatable): its next key is bound anew

Flags:
${CONNECTION_FLAGS}
`;

async function sealShow(argv: string[]): Promise<number> {
  const { values } = parseFlags({ args: argv, strict: true, options: connectionOptions });
  const snap = await withAdmin(values, (c) => c.call('snapshot:get', {}));
  if (!snap.seal) throw new CliError('this contact point does not seal (it is older than sealing)');
  say(values.json ? JSON.stringify(snap.seal) : `key ${snap.seal.fingerprint}\n${sealText(snap.seal)}`);
  return 0;
}

async function sealSet(argv: string[]): Promise<number> {
  const { values } = parseFlags({
    args: argv,
    strict: true,
    options: {
      ...connectionOptions,
      required: { type: 'boolean' },
      'not-required': { type: 'boolean' },
      peer: { type: 'string', multiple: true },
      'no-peers': { type: 'boolean' },
      forget: { type: 'string', multiple: true },
    },
  });
  exclusive('--required', values.required ?? false, '--not-required', values['not-required'] ?? false);
  const peers = values.peer?.map((p) => name('--peer', p));
  exclusive('--peer', peers !== undefined, '--no-peers', values['no-peers'] ?? false);
  const forget = values.forget ?? [];
  if (values.required === undefined && values['not-required'] === undefined && peers === undefined && !values['no-peers'] && forget.length === 0) {
    throw new UsageError('nothing to set: give --required, --not-required, --peer NAME, --no-peers or --forget ADDRESS');
  }
  const view = await withAdmin(values, async (c) => {
    const now = (await c.call('snapshot:get', {})).seal;
    if (!now) throw new CliError('this contact point does not seal (it is older than sealing)');
    const required = values.required ? true : values['not-required'] ? false : now.required;
    return c.call('seal:policy', { required, peers: [...(peers ?? (values['no-peers'] ? [] : now.peers))], ...(forget.length > 0 ? { forget } : {}) });
  });
  say(values.json ? JSON.stringify(view) : sealText(view));
  return 0;
}

const peersList_ = { summary: 'list the peers (name, state, online, LAN address, counts)', help: PEERS_HELP, run: peersList };

export const adminCommands: Command[] = [
  { path: ['peers'], ...peersList_ },
  { path: ['peers', 'list'], ...peersList_ },
  { path: ['peers', 'approve'], summary: 'register a peer', help: PEERS_HELP, run: decision('approve') },
  { path: ['peers', 'reject'], summary: 'turn down a pending request', help: PEERS_HELP, run: decision('reject') },
  { path: ['peers', 'revoke'], summary: 'unregister a peer at once', help: PEERS_HELP, run: decision('revoke') },
  { path: ['peers', 'forget'], summary: "delete a peer's record and key binding", help: PEERS_HELP, run: decision('forget') },
  { path: ['policy'], summary: 'show the auto-approval policy', help: POLICY_HELP, run: policyShow },
  { path: ['policy', 'show'], summary: 'show the auto-approval policy', help: POLICY_HELP, run: policyShow },
  { path: ['policy', 'set'], summary: 'change the auto-approval policy', help: POLICY_HELP, run: policySet },
  { path: ['fingerprint'], summary: "print the contact point's key fingerprint, for external peers to pin", help: FINGERPRINT_HELP, run: fingerprintCommand },
  { path: ['seal'], summary: 'show the "sealed payloads only" policy and the key fingerprint', help: SEAL_HELP, run: sealShow },
  { path: ['seal', 'show'], summary: 'show the "sealed payloads only" policy and the key fingerprint', help: SEAL_HELP, run: sealShow },
  { path: ['seal', 'set'], summary: 'require sealed payloads (office-wide or per peer); forget key bindings', help: SEAL_HELP, run: sealSet },
  { path: ['status'], summary: 'tunnel, relay, uptime, rtt, reconnects, last error, peer counts', help: STATUS_HELP, run: status },
];
