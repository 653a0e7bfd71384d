import { AdminError, type PortPolicyView, type PortView } from '../admin/contract.js';
import { parseBindRule, specialReason } from '../contact-point/port-policy.js';
import { CONNECTION_FLAGS, connectionOptions, formatDuration, withAdmin } from './admin-commands.js';
import { exclusive, integer, listenRule, parseFlags, positionals, targetRule, type Command } from './args.js';
import { CliError, UsageError } from './errors.js';
import { emit, formatTable, note, say } from './output.js';

/**
 * `contact-point ports ...`: port mediation at a running contact point (serve or start): the
 * LAN ports the relay had it open, closing one, and the admin's port policy (the allowlist).
 */

/** The rule syntax, shared by `ports policy --help` and `serve --help`. */
export const PORT_RULES_HELP = `Target rules, where the contact point may connect on the relay's behalf: ADDRESS[/PREFIX][:PORTS]
  192.168.1.0/24:80,443    10.0.0.5:8000-8100    [fd00::/8]:22    192.168.1.20 (every port)
  Loopback, link-local (169.254.0.0/16), cloud metadata (169.254.169.254, fd00:ec2::254),
  0.0.0.0/8, multicast, broadcast and reserved addresses, and IPv6 forms carrying one (6to4,
  Teredo), match only a rule that lies wholly inside them, such as 127.0.0.1/32:631, never a
  wide one such as 0.0.0.0/0. A host name given to connect to is resolved at the contact
  point and every address it resolves to must be allowed.
Listen rules, which ports the contact point may open on its own host: [ADDRESS:][tcp|udp:]PORTS
  tcp:8000-8100    udp:5000    192.168.1.10:tcp:8080    [::1]:tcp:8080    1-65535 (tcp and udp)
  A rule without an address allows any address but loopback, multicast, broadcast and the
  other special ones: those need a rule naming the address, such as 127.0.0.1:tcp:631.
  An open of "any free port" (port 0) needs a rule covering every port: \`expose\` opens one
  for each connection it carries, so exposing a TCP target needs tcp:1-65535 (a UDP one
  udp:1-65535) besides the target rule.`;

function localAddress(p: PortView): string {
  const host = p.address.includes(':') ? `[${p.address}]` : p.address;
  return `${host}:${p.port === 0 ? '*' : p.port}`;
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
}

function policyLines(p: PortPolicyView): string[] {
  const lines = [`targets  ${p.targets.length > 0 ? p.targets.join(' ') : 'none'}`, `listen   ${p.listen.length > 0 ? p.listen.join(' ') : 'none'}`];
  if (p.targets.length === 0 && p.listen.length === 0) lines.push('nothing is allowed: every port request is refused with PERMISSION_DENIED (30)');
  else if (p.listen.length === 0) lines.push('no listen rules: every open is refused with PERMISSION_DENIED (30)');
  else if (p.targets.length === 0) lines.push('no target rules: every connect (and expose) is refused with PERMISSION_DENIED (30)');
  return lines;
}

// ---- ports [list] | close ID ----------------------------------------------------------------

const PORTS_HELP = `Usage: contact-point ports [list] [flags]
       contact-point ports close ID [flags]
       contact-point ports policy [show|set] [flags]

Port mediation at a running contact point: the relay (an operator with the mediate right,
e.g. \`contact-point expose\`) has it open LAN ports and connect them to LAN targets, within
the port policy the admin set.
  list       every open port: id, protocol, local address:port, state, the operator who asked,
             connect target, open streams, connections refused, bytes in/out, age
             (default). A relay exposure (expose) is one port in state exposed: its
             connections are its streams
  close ID   close port ID at once: its connections are reset on both sides
  policy     show or change what port mediation may do (contact-point ports policy --help)

Flags:
${CONNECTION_FLAGS}

Examples:
  contact-point ports
  contact-point ports close 7
`;

async function portsList(argv: string[]): Promise<number> {
  const { values } = parseFlags({ args: argv, strict: true, options: connectionOptions });
  const snap = await withAdmin(values, (c) => c.call('snapshot:get', {}));
  if (values.json) {
    say(JSON.stringify(snap.ports));
    return 0;
  }
  if (snap.ports.length === 0) {
    const policy = snap.portPolicy;
    const hint =
      policy.targets.length === 0 && policy.listen.length === 0
        ? '; the port policy allows nothing yet (contact-point ports policy set --help)'
        : '';
    note(`no open ports${hint}`);
    return 0;
  }
  const now = Date.now();
  say(
    formatTable(
      ['ID', 'PROTO', 'LOCAL', 'STATE', 'OPERATOR', 'TARGET', 'STREAMS', 'REFUSED', 'IN', 'OUT', 'AGE'],
      snap.ports.map((p) => [
        String(p.id),
        p.proto,
        localAddress(p),
        p.state,
        p.operator,
        p.target ?? '-',
        String(p.streams),
        String(p.refused),
        formatBytes(p.bytesIn),
        formatBytes(p.bytesOut),
        formatDuration(now - p.createdAt),
      ]),
    ),
  );
  return 0;
}

async function portsClose(argv: string[]): Promise<number> {
  const { values, positionals: given } = parseFlags({ args: argv, strict: true, allowPositionals: true, options: connectionOptions });
  const [raw] = positionals(given, ['ID']);
  const id = integer('ID', raw!, 1, 0xffffffff);
  try {
    await withAdmin(values, (c) => c.call('ports:close', { id }));
  } catch (err: unknown) {
    if (err instanceof AdminError && err.code === 'NOT_FOUND') {
      throw new AdminError('NOT_FOUND', `${err.message}: contact-point ports lists the open ones`);
    }
    throw err;
  }
  if (values.json) emit('closed', { id });
  else say(`port ${id} closed; its connections were reset`);
  return 0;
}

// ---- ports policy [show] | set --------------------------------------------------------------

const POLICY_HELP = `Usage: contact-point ports policy [show] [flags]
       contact-point ports policy set [--target RULE ...] [--listen RULE ...] [--clear] [flags]
       contact-point ports policy set --add|--remove [--target RULE ...] [--listen RULE ...] [flags]

Shows or changes the port policy: the admin's allowlist for port mediation. Empty by
default, and then every request from the relay is refused with PERMISSION_DENIED (30) and
shows in the flow. The policy is saved in the state folder; \`serve --allow-target/--allow-listen\`
set it at start.

Flags of set (a list not mentioned stays as it is):
  --target RULE    allow connects to RULE (repeatable); replaces the target list
  --listen RULE    allow opening/listening on RULE (repeatable); replaces the listen list
  --clear          empty both lists first (then --target / --listen, if given, fill theirs)
  --add            add the --target / --listen rules to their lists instead of replacing them
  --remove         remove the --target / --listen rules from their lists (each must be there)
A replaced list says on stderr which rules it dropped.

${PORT_RULES_HELP}

Flags:
${CONNECTION_FLAGS}

Examples:
  contact-point ports policy set --target 192.168.1.20/32:80,443 --listen tcp:1-65535
  contact-point ports policy set --add --target 192.168.1.30/32:631
  contact-point ports policy set --remove --target 192.168.1.20/32:80,443
  contact-point ports policy set --clear
`;

async function policyShow(argv: string[]): Promise<number> {
  const { values } = parseFlags({ args: argv, strict: true, options: connectionOptions });
  const snap = await withAdmin(values, (c) => c.call('snapshot:get', {}));
  if (values.json) say(JSON.stringify(snap.portPolicy));
  else for (const line of policyLines(snap.portPolicy)) say(line);
  return 0;
}

async function policySet(argv: string[]): Promise<number> {
  const { values } = parseFlags({
    args: argv,
    strict: true,
    options: {
      ...connectionOptions,
      target: { type: 'string', multiple: true },
      listen: { type: 'string', multiple: true },
      clear: { type: 'boolean' },
      add: { type: 'boolean' },
      remove: { type: 'boolean' },
    },
  });
  exclusive('--add', values.add ?? false, '--remove', values.remove ?? false);
  const edit = values.add ? 'add' : values.remove ? 'remove' : undefined;
  if (edit) exclusive(`--${edit}`, true, '--clear', values.clear ?? false);
  if (edit && values.target === undefined && values.listen === undefined) throw new UsageError(`--${edit} needs --target RULE or --listen RULE`);
  const targets = values.target?.map((t) => targetRule('--target', t));
  const listen = values.listen?.map((l) => listenRule('--listen', l));
  if (targets === undefined && listen === undefined && !values.clear) {
    throw new UsageError('nothing to set: give --target RULE, --listen RULE or --clear');
  }
  for (const t of targets ?? []) {
    if (t.special) note(`note: ${t.text} names loopback, link-local or other special addresses; operators may now reach them`);
  }
  for (const l of listen ?? []) {
    const address = parseBindRule(l).address;
    const special = address !== undefined ? specialReason(address) : undefined;
    if (special) note(`note: ${l} names ${address} (${special}); operators may now open ports there`);
  }
  const view = await withAdmin(values, async (c) => {
    const current = (await c.call('snapshot:get', {})).portPolicy;
    const next = {
      targets: nextRules('--target', current.targets, targets?.map((t) => t.text), edit, values.clear ?? false),
      listen: nextRules('--listen', current.listen, listen, edit, values.clear ?? false),
    };
    const result = await c.call('ports:policy', next);
    // A replaced list drops what is not in the new one: say so, it is easy to miss.
    for (const [what, before, after] of [['target', current.targets, result.targets], ['listen', current.listen, result.listen]] as const) {
      const dropped = before.filter((r) => !after.includes(r));
      if (dropped.length > 0 && edit !== 'remove') note(`dropped ${what} rule${dropped.length === 1 ? '' : 's'}: ${dropped.join(' ')} (--add adds to the list instead)`);
    }
    return result;
  });
  if (values.json) say(JSON.stringify(view));
  else for (const line of policyLines(view)) say(line);
  return 0;
}

const list = { summary: 'list the mediated LAN ports (state, operator, target, streams, bytes, age)', help: PORTS_HELP, run: portsList };
const show = { summary: 'show the port policy (allowed targets and listen ports)', help: POLICY_HELP, run: policyShow };

export const portsCommands: Command[] = [
  { path: ['ports'], ...list },
  { path: ['ports', 'list'], ...list },
  { path: ['ports', 'close'], summary: 'close a mediated port and reset its connections', help: PORTS_HELP, run: portsClose },
  { path: ['ports', 'policy'], ...show },
  { path: ['ports', 'policy', 'show'], ...show },
  { path: ['ports', 'policy', 'set'], summary: 'change the port policy', help: POLICY_HELP, run: policySet },
];

/**
 * A rule list after `ports policy set`: replaced by `given` (or emptied by --clear), or with
 * `given` added or removed. Removing a rule that is not there is an error (nothing changes).
 */
function nextRules(flag: string, current: readonly string[], given: readonly string[] | undefined, edit: 'add' | 'remove' | undefined, clear: boolean): string[] {
  const base = clear ? [] : [...current];
  if (given === undefined) return base;
  if (edit === undefined) return [...new Set(given)];
  const canonical = current.map((r) => (flag === '--target' ? targetRule(flag, r).text : listenRule(flag, r)));
  if (edit === 'add') {
    const already = given.filter((r) => canonical.includes(r));
    if (already.length > 0) note(`${flag} ${already.join(' ')}: already in the list`);
    return [...base, ...given.filter((r, i) => !canonical.includes(r) && given.indexOf(r) === i)];
  }
  const missing = given.filter((r) => !canonical.includes(r));
  if (missing.length > 0) {
    throw new CliError(`${flag} ${missing.join(' ')}: not in the list (${current.length > 0 ? current.join(' ') : 'empty'}); nothing changed`);
  }
  return base.filter((_r, i) => !given.includes(canonical[i]!));
}
