import { join } from 'node:path';
import { RELAY_STATUS_PATH, type ClusterView, type RelayStatusView, type TrafficView } from '../admin/relay-contract.js';
import { createLogger } from '../runtime/logger.js';
import { ADMIN_TOKEN_ENV, formatDuration } from './admin-commands.js';
import { natsUrls, parseFlags, type Command } from './args.js';
import { CliError, UsageError } from './errors.js';
import { formatTable, note, say } from './output.js';
import { formatBytes } from './ports-command.js';
import { processAlive, readRelayAdminFile, RELAY_ADMIN_FILE, resolveStateDir } from './state-dir.js';

/** `contact-point relay status`: what a running relay's status endpoint (--admin-listen) serves. */

/** How long `relay status` waits for the relay's answer. */
export const RELAY_STATUS_TIMEOUT_MS = 5_000;
/** Refusals the text output lists (--json has all the relay keeps). */
const REFUSALS_SHOWN = 20;

const HELP = `Usage: contact-point relay status [flags]

Shows a running relay, from the status endpoint it serves with --admin-listen: the connected
offices (contact points) with what each said about itself at hello (software, host, LAN
addresses, capabilities), how long each has been up, its round-trip time, announced peers
and traffic; external and operator sessions; exposures with their public ports and
connection counts; the most recent refusals with their codes and reasons.

Flags:
  --state DIR      the relay's state folder, where it keeps ${RELAY_ADMIN_FILE} (default
                   ~/.contact-point/relay, or $CONTACT_POINT_STATE)
  --admin URL      the status endpoint instead (http://127.0.0.1:7903), with its token in
                   ${ADMIN_TOKEN_ENV}
  --cluster URL[,URL]
                   a relay cluster's NATS servers instead: the nodes and which node holds
                   each office's tunnel, read from the cluster's presence records (no node
                   needs --admin-listen for this)
  --json           print the status as one JSON object (the endpoint's GET ${RELAY_STATUS_PATH})
  -h, --help       this help
`;

async function endpoint(values: { admin?: string | undefined; state?: string | undefined }): Promise<{ url: string; token: string }> {
  if (values.admin !== undefined) {
    let u: URL;
    try {
      u = new URL(values.admin);
    } catch {
      throw new UsageError(`--admin "${values.admin}": not a URL; expected something like http://127.0.0.1:7903`);
    }
    if (u.protocol !== 'http:') throw new UsageError(`--admin "${values.admin}": expected an http:// URL such as http://127.0.0.1:7903, not ${u.protocol}//`);
    const token = process.env[ADMIN_TOKEN_ENV];
    if (!token) throw new UsageError(`--admin needs the relay's status token in ${ADMIN_TOKEN_ENV} (tokens are never taken as arguments: ps shows them to every user)`);
    return { url: u.origin, token };
  }
  const dir = resolveStateDir('relay', values.state);
  const path = join(dir, RELAY_ADMIN_FILE);
  const file = await readRelayAdminFile(dir);
  if (!file) {
    throw new CliError(
      `no relay status endpoint found: ${path} does not exist. Run the relay with --admin-listen 127.0.0.1:PORT, point at its state ` +
        `folder with --state DIR, or give --admin URL with ${ADMIN_TOKEN_ENV} set`,
    );
  }
  if (!processAlive(file.pid)) throw new CliError(`${path} names pid ${file.pid}, which is not running: that relay stopped without cleaning up`);
  return { url: file.url, token: file.token };
}

/** GET /api/status with the token; a refusal or an unreachable relay is a CliError. */
export async function fetchRelayStatus(url: string, token: string): Promise<RelayStatusView> {
  let res: Response;
  try {
    res = await fetch(url + RELAY_STATUS_PATH, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(RELAY_STATUS_TIMEOUT_MS) });
  } catch (err: unknown) {
    const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message;
    throw new CliError(`cannot reach the relay's status endpoint ${url}: ${cause}`);
  }
  if (res.status === 401) throw new CliError(`${url} refused the token (401): the relay makes a new one each start; read it again from ${RELAY_ADMIN_FILE}`);
  if (!res.ok) throw new CliError(`${url}${RELAY_STATUS_PATH} answered ${res.status} ${res.statusText}`);
  return (await res.json()) as RelayStatusView;
}

function traffic(t: TrafficView): [string, string] {
  return [`${t.framesIn} / ${formatBytes(t.bytesIn)}`, `${t.framesOut} / ${formatBytes(t.bytesOut)}`];
}

function ms(v: number | undefined): string {
  return v === undefined ? '-' : `${v} ms`;
}

/** The status as a person reads it: a summary, then one table per part. */
export function relayStatusText(s: RelayStatusView): string[] {
  const { relay: r, totals: t, refusals } = s;
  const age = (since: number): string => formatDuration(r.now - since);
  const lines = [
    `relay          ${r.name} (version ${r.version}), up ${age(r.startedAt)}, ${r.url}${r.udpPort ? `, UDP ${r.udpPort}` : ''}`,
    `offices        ${t.offices} connected`,
    `sessions       ${t.externals} external (${t.operators} operating ports), ${t.sockets} sockets`,
    `exposures      ${t.exposures}`,
    `messages       ${t.routed} routed, ${t.forwarded > 0 || s.cluster ? `${t.forwarded} forwarded to other nodes, ` : ''}${t.refused} refused`,
    `refusals       ${refusals.total} since start${refusals.notLogged > 0 ? `, ${refusals.notLogged} over the log rate (summed in the log)` : ''}`,
  ];
  if (s.cluster) {
    const c = s.cluster;
    lines.push('', `CLUSTER (as node ${c.node} sees it${c.connected ? '' : '; cut off from NATS, so this is stale'})`);
    lines.push(...clusterTables(c, c.node));
  }
  if (s.offices.length > 0) {
    lines.push('', 'OFFICES (frames / bytes in and out, as seen by the relay)');
    lines.push(
      formatTable(
        ['ID', 'HOST', 'SOFTWARE', 'LAN ADDRESSES', 'FROM', 'UP', 'RTT', 'PEERS', 'STREAMS', 'IN', 'OUT', 'CAPABILITIES'],
        s.offices.map((o) => [o.id, o.env.host ?? '-', o.env.software ?? '-', o.env.addresses.map((a) => a.replace(/\/.*$/, '')).join(',') || '-', o.remote, age(o.since), ms(o.rttMs), String(o.peers), String(o.streams), ...traffic(o.traffic), `${o.env.capabilities.join(',') || '-'}${o.mediation ? '' : ' (no port mediation)'}`]),
      ),
    );
  }
  if (s.externals.length > 0) {
    lines.push('', 'EXTERNAL SESSIONS');
    lines.push(
      formatTable(
        ['NAME', 'SESSION', 'RIGHTS', 'SOFTWARE', 'FROM', 'UP', 'RTT', 'IN', 'OUT', 'OPERATOR'],
        s.externals.map((e) => [
          e.address,
          e.session,
          e.rights.join(','),
          e.software ?? '-',
          e.remote ?? '-',
          age(e.since),
          ms(e.rttMs),
          ...traffic(e.traffic),
          e.operator ? `${e.operator.ports} ports, ${e.operator.exposures} exposures, ${e.operator.streams} streams` : '-',
        ]),
      ),
    );
  }
  if (s.exposures.length > 0) {
    lines.push('', 'EXPOSURES');
    lines.push(
      formatTable(
        ['ID', 'PUBLIC PORT', 'PROTO', 'OFFICE', 'TARGET', 'OPERATOR', 'OPEN', 'CONNECTIONS', 'REFUSED'],
        s.exposures.map((x) => [String(x.id), String(x.publicPort), x.proto, x.cp, x.target, x.operator, x.proto === 'tcp' ? `${x.active}/${x.maxConnections}` : '-', String(x.connections), String(x.refused)]),
      ),
    );
  }
  if (refusals.recent.length > 0) {
    const shown = refusals.recent.slice(0, REFUSALS_SHOWN);
    lines.push('', `RECENT REFUSALS (newest first; ${shown.length} of the last ${refusals.recent.length})`);
    lines.push(
      formatTable(
        ['TIME', 'KIND', 'CODE', 'WHO', 'FROM', 'REASON'],
        shown.map((x) => [new Date(x.at).toISOString().slice(11, 19), x.kind, `${x.name} (${x.code})${x.count > 1 ? ` x${x.count}` : ''}`, x.who, x.address ?? '-', x.reason]),
      ),
    );
  }
  return lines;
}

/** The cluster's nodes and office placements as a person reads them (`relay status --cluster`). */
export function clusterPresenceText(c: Omit<ClusterView, 'node' | 'connected'>, servers: readonly string[]): string[] {
  const lines = [`CLUSTER (presence records in NATS at ${servers.join(',')})`];
  if (c.nodes.length === 0) return [...lines, 'no node holds a tunnel or a session'];
  return [...lines, ...clusterTables(c)];
}

/** The nodes with their counts, then each office's node; `self` is marked "(this one)". */
function clusterTables(c: Omit<ClusterView, 'node' | 'connected'>, self?: string): string[] {
  // The URL each node advertises for clients (relay --advertise-url, placement): a column once any node has one.
  const urls = c.nodes.some((n) => n.url !== undefined);
  const lines = [
    formatTable(
      ['NODE', 'OFFICES', 'EXTERNAL SESSIONS', ...(urls ? ['ADVERTISED URL'] : [])],
      c.nodes.map((n) => [n.node === self ? `${n.node} (this one)` : n.node, String(n.offices), String(n.externals), ...(urls ? [n.url ?? '-'] : [])]),
    ),
  ];
  if (c.offices.length > 0) lines.push('', formatTable(['OFFICE', 'TUNNEL ON NODE'], c.offices.map((o) => [o.id, o.node])));
  return lines;
}

async function run(argv: string[]): Promise<number> {
  const { values } = parseFlags({ args: argv, strict: true, options: { admin: { type: 'string' }, state: { type: 'string' }, cluster: { type: 'string' }, json: { type: 'boolean' } } });
  if (values.cluster !== undefined) {
    if (values.admin !== undefined || values.state !== undefined) throw new UsageError('--cluster reads the cluster from NATS: it cannot be used with --admin or --state');
    const servers = natsUrls('--cluster', values.cluster);
    const { readClusterPresence } = await import('../relay/cluster-nats.js');
    let c: Omit<ClusterView, 'node' | 'connected'>;
    try {
      c = await readClusterPresence(servers, createLogger({ level: 'error' }));
    } catch (err: unknown) {
      throw new CliError((err as Error).message);
    }
    if (values.json) say(JSON.stringify(c));
    else for (const line of clusterPresenceText(c, servers)) say(line);
    return 0;
  }
  const { url, token } = await endpoint(values);
  const status = await fetchRelayStatus(url, token);
  if (values.json) say(JSON.stringify(status));
  else {
    for (const line of relayStatusText(status)) say(line);
    if (status.offices.length === 0) note('no office is connected');
  }
  return 0;
}

export const relayStatusCommand: Command = {
  path: ['relay', 'status'],
  summary: 'a running relay: offices, sessions, exposures, recent refusals',
  help: HELP,
  run,
};
