/**
 * `contact-point`: the command-line interface. This file is the command tree and the one
 * place where failures become messages and exit codes; each command group lives in core/cli/.
 */
import { AdminError } from './admin/contract.js';
import { adminCommands } from './cli/admin-commands.js';
import { auditCommands } from './cli/audit-command.js';
import { LOG_FORMAT_ENV, takeLogFormat, wantsHelp, type Command } from './cli/args.js';
import { CliError, ExitCode, UsageError } from './cli/errors.js';
import { exposeCommand } from './cli/expose-command.js';
import { historyCommands } from './cli/history-command.js';
import { exitSoonIfStuck } from './cli/lifecycle.js';
import { note, say } from './cli/output.js';
import { peerCommands } from './cli/peer-command.js';
import { peerLookupCommand } from './cli/peer-lookup-command.js';
import { portsCommands } from './cli/ports-command.js';
import { relayCommand } from './cli/relay-command.js';
import { credentialCommands } from './cli/relay-credential-commands.js';
import { relayStatusCommand } from './cli/relay-status-command.js';
import { rulesCommands } from './cli/rules-command.js';
import { serveCommand } from './cli/serve-command.js';
import { startCommand } from './cli/start-command.js';
import { createLogger, type LogFormat } from './runtime/logger.js';
import { VERSION } from './version.js';

const COMMANDS: readonly Command[] = [
  startCommand,
  relayCommand,
  relayStatusCommand,
  ...credentialCommands,
  serveCommand,
  ...adminCommands,
  ...historyCommands,
  ...auditCommands,
  ...rulesCommands,
  ...portsCommands,
  ...peerCommands,
  peerLookupCommand,
  exposeCommand,
];

const HELP = `contact-point ${VERSION}: one outbound tunnel from an office LAN to a public relay

Usage: contact-point <command> [flags]

Try it on one machine:
  start                        embedded local relay + contact point "demo" (what \`npm start\` runs)

Run the parts:
  relay                        the public relay (ws/wss server)
  relay status                 a running relay (--admin-listen): offices, sessions, exposures, refusals
  relay credential add         create a credential for a contact point or an external peer
  relay credential list        list credentials (never secrets)
  relay credential remove      delete a credential
  serve                        the contact point, headless: tunnel, peer port, admin endpoint
                               (--direct-listen: external peers connect to it directly, no relay)
  credential add               direct mode: a credential for an external peer of the contact point
  credential list              direct mode: the contact point's credentials (never secrets)
  credential remove            direct mode: delete one (its live sessions close)

Administer a running contact point (serve or start):
  status                       tunnel state, relay, uptime, rtt, reconnects, last error, peer counts
  peers [list]                 known peers: state, online, LAN address, message counts
  peers approve NAME           register a peer
  peers reject NAME            turn down a pending request
  peers revoke NAME            unregister a peer at once
  peers forget NAME            delete a peer's record and key binding
  policy [show]                the auto-approval policy
  policy set                   auto-approve by subnet or join code
  history                      stored messages, refusals and port events: filter, page, export
  history retention            how much history is kept (show or set)
  ports [list]                 mediated LAN ports: state, operator, target, streams, bytes, age
  ports close ID               close a mediated port and reset its connections
  ports policy [show]          the port policy: LAN targets and local ports mediation may use
  ports policy set             change it (empty by default: every port request is refused)
  audit                        the audit trail: every decision, when, via GUI/CLI/API, before/after
  rules [show]                 access rules: who may message each peer, size and rate limits
  rules set                    a peer's or the office default's rules
  rules check                  the content check: none, json-depth, or the admin's command
  rules refusals NAME          what the rules refused for one peer

Peers:
  peer join                    an internal (LAN) peer: register, print (and --echo) messages
  peer send                    send one message, as an external peer or an internal one
  peer lookup ADDRESS          is its office connected, is the peer online (--watch: every change)

Port mediation, as an operator (a relay credential with the mediate right):
  expose CP HOST:PORT          make a LAN target behind contact point CP reachable at a public
                               port of the relay (e.g. a printer's web page)

Every command has --help and --log-format text|json (log lines and errors on stderr as text,
the default, or one JSON object a line). Also: contact-point --version.

Exit codes: 0 ok, 1 failed, 2 bad command line, 3 refused (a message or a port request),
4 no reply in time.
Environment:
  CONTACT_POINT_STATE          state folder, instead of ~/.contact-point/<relay|serve|demo|peer>
  CONTACT_POINT_CREDENTIAL     the credential secret, instead of --credential-file
  CONTACT_POINT_ADMIN_TOKEN    the admin token, with --admin WSURL (relay status: --admin URL)
  ${LOG_FORMAT_ENV}     text or json, instead of --log-format
  HTTPS_PROXY, HTTP_PROXY, NO_PROXY   proxy for outbound connections (or --proxy / --no-proxy)
Secrets (credentials, tokens, join codes) are never arguments: ps shows arguments to every user.
`;

const same = (a: readonly string[], b: readonly string[]): boolean => a.length === b.length && a.every((w, i) => w === b[i]);
const under = (path: readonly string[]): Command[] =>
  COMMANDS.filter((c) => c.path.length === path.length + 1 && same(c.path.slice(0, path.length), path));

function groupHelp(path: readonly string[]): string {
  const children = under(path);
  const width = Math.max(...children.map((c) => c.path.at(-1)!.length));
  return [
    `Usage: contact-point ${path.join(' ')} <${children.map((c) => c.path.at(-1)).join('|')}> [flags]`,
    '',
    ...children.map((c) => `  ${c.path.at(-1)!.padEnd(width)}  ${c.summary}`),
    '',
    `Run \`contact-point ${path.join(' ')} <subcommand> --help\` for its flags.`,
    '',
  ].join('\n');
}

/** The command a command line names, the words that named it, and the rest. */
function resolve(argv: readonly string[]): { path: string[]; command: Command | undefined; rest: string[]; problem?: string } {
  const words: string[] = [];
  for (const a of argv) {
    if (a.startsWith('-') || words.length === 3) break;
    words.push(a);
  }
  for (let k = words.length; k >= 1; k--) {
    const path = words.slice(0, k);
    const command = COMMANDS.find((c) => same(c.path, path));
    const children = under(path);
    if (!command && children.length === 0) continue;
    const next = argv[k];
    const names = children.map((c) => c.path.at(-1)!);
    if (children.length > 0 && next !== undefined && !next.startsWith('-')) {
      // `peers printer`, `relay start`: a word where a subcommand belongs.
      if (!command || !names.includes(next)) {
        return { path, command, rest: argv.slice(k), problem: `unknown subcommand "${next}" for ${path.join(' ')}; expected ${names.join(', ')}` };
      }
    }
    return { path, command, rest: argv.slice(k) };
  }
  const first = argv[0] ?? '';
  throw new UsageError(`unknown command "${first}"; the commands are ${[...new Set(COMMANDS.map((c) => c.path[0]))].join(', ')}`);
}

async function dispatch(argv: string[]): Promise<number> {
  const first = argv[0];
  if (first === undefined) {
    note(HELP);
    return ExitCode.USAGE;
  }
  if (first === '--help' || first === '-h' || first === 'help') {
    say(HELP);
    return ExitCode.OK;
  }
  if (first === '--version' || first === '-V') {
    say(VERSION);
    return ExitCode.OK;
  }
  let path: string[] = [];
  let logFormat: LogFormat = 'text';
  try {
    if (first.startsWith('-')) throw new UsageError(`unknown flag ${first} (a command comes first: contact-point <command> [flags])`);
    const target = resolve(argv);
    path = target.path;
    if (target.problem) throw new UsageError(target.problem);
    if (!target.command) {
      if (wantsHelp(target.rest)) {
        say(groupHelp(path));
        return ExitCode.OK;
      }
      throw new UsageError(`${path.join(' ')} needs a subcommand: ${under(path).map((c) => c.path.at(-1)).join(', ')}`);
    }
    if (wantsHelp(target.rest)) {
      say(target.command.help);
      return ExitCode.OK;
    }
    const flags = takeLogFormat(target.rest, process.env);
    logFormat = flags.logFormat;
    return await target.command.run(flags.rest, { logFormat });
  } catch (err: unknown) {
    const where = path.length > 0 ? `contact-point ${path.join(' ')}` : 'contact-point';
    // With --log-format json, the failure is a log line like the others (collectors parse every line).
    const fail = (message: string, hint?: string): void => {
      if (logFormat === 'json') createLogger({ format: 'json' }).error(message, { command: where, ...(hint ? { hint } : {}) });
      else for (const line of [`${where}: ${message}`, ...(hint ? [hint] : [])]) note(line);
    };
    if (err instanceof UsageError) {
      fail(err.message, `Run \`${where} --help\` for usage.`);
      return ExitCode.USAGE;
    }
    if (err instanceof CliError) {
      fail(err.message);
      return err.exitCode;
    }
    if (err instanceof AdminError) {
      fail(`${err.message} (${err.code})`);
      return ExitCode.FAILURE;
    }
    fail(err instanceof Error ? err.message : String(err));
    return ExitCode.FAILURE;
  }
}

/** Runs one command line; resolves with the exit code (bin/contact-point.js sets it). */
export async function main(argv: string[]): Promise<number> {
  // The SDK's retry timers are unref'd (they must not keep an application alive); the CLI waits
  // on them, so it holds the event loop open itself until the command is done.
  const keepAlive = setInterval(() => undefined, 1 << 30);
  try {
    const code = await dispatch(argv);
    exitSoonIfStuck(code);
    return code;
  } finally {
    clearInterval(keepAlive);
  }
}
