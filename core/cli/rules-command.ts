import {
  MAX_CHECK_CONCURRENCY,
  MAX_CHECK_JSON_DEPTH,
  MAX_CHECK_TIMEOUT_MS,
  SENDER_PATTERN,
  type ContentCheckView,
  type RuleSetView,
  type RulesView,
} from '../admin/contract.js';
import { checkText } from '../admin/rules-text.js';
import { countFlag, integer, name, oneOf, parseFlags, positionals, type Command } from './args.js';
import { UsageError } from './errors.js';
import { formatTable, say } from './output.js';
import { CONNECTION_FLAGS, connectionOptions, withAdmin } from './admin-commands.js';

/**
 * `contact-point rules`: the access rules and the content check of a running contact point
 * (docs/PROTOCOL.md 9.6), through the admin API like every admin command.
 */

/** Default time budget of a check command per message, in ms. */
export const DEFAULT_CHECK_TIMEOUT_MS = 2_000;
/** Default messages at a check command at once. */
export const DEFAULT_CHECK_CONCURRENCY = 16;

const RULES_HELP = `Usage: contact-point rules [show] [flags]
       contact-point rules set [--peer NAME] [--allow PATTERN ...] [--max-bytes N] [--per-minute N] [flags]
       contact-point rules check none [flags]
       contact-point rules check json-depth --depth N [flags]
       contact-point rules check command [--timeout-ms N] [--fail closed|open] [--concurrency N] [flags] -- PROGRAM [ARG ...]
       contact-point rules refusals NAME [flags]

Who may message the LAN peers, and what may pass (docs/PROTOCOL.md 9.6). Every change is
saved and audited before the command returns.

  show       the office default, each peer's own rules, and the content check
  set        replaces the rules of --peer NAME (or, without --peer, the office default) whole;
             what is left out, a peer takes from the office default (set --peer NAME with
             nothing else clears its own rules). The office default's unset fields let
             everything through.
    --allow PATTERN   a sender that may message it (repeatable): * (anyone), tech@relay,
                      *@relay (every external peer), *@branch (another office's peers),
                      scanner@ID or *@ID (this office's LAN peers). A sender on no pattern
                      is refused NOT_ALLOWED (24), whether the peer exists or not
    --max-bytes N     largest payload it takes (TOO_LARGE)
    --per-minute N    messages a minute it takes (RATE_LIMITED)
  check      the content check every message to a LAN peer passes; refused: CONTENT_REFUSED (25)
    none              no check
    json-depth        built in: refuses payloads nested deeper than --depth N (1-${MAX_CHECK_JSON_DEPTH})
    command           runs PROGRAM ARG... (no shell) as one long-lived process: a JSON line per
                      message on its stdin, a JSON line per answer on its stdout
      --timeout-ms N    time budget per message (default ${DEFAULT_CHECK_TIMEOUT_MS}, at most ${MAX_CHECK_TIMEOUT_MS})
      --fail closed|open  a timeout or crash refuses the message (closed, the default) or delivers it
      --concurrency N   messages at the check at once (default ${DEFAULT_CHECK_CONCURRENCY}, at most ${MAX_CHECK_CONCURRENCY})
  refusals   what the rules and the check refused for peer NAME since the contact point started

Flags:
${CONNECTION_FLAGS}
`;

function ruleText(r: RuleSetView): string {
  const parts = [
    r.allow !== undefined ? `allow ${r.allow.length > 0 ? r.allow.join(' ') : 'no one'}` : undefined,
    r.maxBytes !== undefined ? `at most ${r.maxBytes} bytes` : undefined,
    r.perMinute !== undefined ? `at most ${r.perMinute} a minute` : undefined,
  ].filter((x) => x !== undefined);
  return parts.length > 0 ? parts.join('; ') : 'none';
}

function rulesText(v: RulesView): string[] {
  return [
    `office default  ${ruleText(v.office)}${v.office.allow === undefined ? ' (anyone may message a peer without rules of its own)' : ''}`,
    `content check   ${checkText(v.check)}`,
    ...(v.peers.length > 0 ? ['', formatTable(['PEER', 'RULES (the rest from the office default)'], v.peers.map((p) => [p.name, ruleText(p)]))] : []),
  ];
}

async function show(argv: string[]): Promise<number> {
  const { values } = parseFlags({ args: argv, strict: true, options: connectionOptions });
  const v = await withAdmin(values, (c) => c.call('rules:get', {}));
  if (values.json) say(JSON.stringify(v));
  else for (const line of rulesText(v)) say(line);
  return 0;
}

function pattern(value: string): string {
  if (!SENDER_PATTERN.test(value)) throw new UsageError(`--allow "${value}": expected *, or name@domain where either part may use * (tech@relay, *@relay, *@branch)`);
  return value;
}

async function set(argv: string[]): Promise<number> {
  const { values } = parseFlags({
    args: argv,
    strict: true,
    options: { ...connectionOptions, peer: { type: 'string' }, allow: { type: 'string', multiple: true }, 'max-bytes': { type: 'string' }, 'per-minute': { type: 'string' } },
  });
  const peer = values.peer !== undefined ? name('--peer', values.peer) : undefined;
  const maxBytes = countFlag('--max-bytes', values['max-bytes'], 1024 * 1024 * 1024);
  const perMinute = countFlag('--per-minute', values['per-minute']);
  const allow = values.allow?.map(pattern);
  const v = await withAdmin(values, (c) =>
    c.call('rules:set', {
      ...(peer !== undefined ? { peer } : {}),
      ...(allow !== undefined ? { allow } : {}),
      ...(maxBytes !== undefined ? { maxBytes } : {}),
      ...(perMinute !== undefined ? { perMinute } : {}),
    }),
  );
  if (values.json) say(JSON.stringify(v));
  else say(peer !== undefined ? `${peer}: ${ruleText(v.peers.find((p) => p.name === peer) ?? {})}` : `office default: ${ruleText(v.office)}`);
  return 0;
}

async function check(argv: string[]): Promise<number> {
  const { values, positionals: given } = parseFlags({
    args: argv,
    strict: true,
    allowPositionals: true,
    options: { ...connectionOptions, depth: { type: 'string' }, 'timeout-ms': { type: 'string' }, fail: { type: 'string' }, concurrency: { type: 'string' } },
  });
  const [kindText, ...program] = given;
  if (kindText === undefined) throw new UsageError('rules check needs a kind: none, json-depth or command');
  const kind = oneOf('KIND', kindText, ['none', 'json-depth', 'command'] as const);
  const only = (allowed: readonly string[]): void => {
    for (const f of ['depth', 'timeout-ms', 'fail', 'concurrency'] as const) {
      if (values[f] !== undefined && !allowed.includes(f)) throw new UsageError(`--${f} does not go with rules check ${kind}`);
    }
    if (kind !== 'command' && program.length > 0) throw new UsageError(`rules check ${kind} takes no program (${program.join(' ')})`);
  };
  let spec: ContentCheckView;
  if (kind === 'none') {
    only([]);
    spec = { kind };
  } else if (kind === 'json-depth') {
    only(['depth']);
    if (values.depth === undefined) throw new UsageError('rules check json-depth needs --depth N');
    spec = { kind, depth: integer('--depth', values.depth, 1, MAX_CHECK_JSON_DEPTH) };
  } else {
    only(['timeout-ms', 'fail', 'concurrency']);
    if (program.length === 0) throw new UsageError('rules check command needs the program after --: rules check command -- /usr/local/bin/my-check --strict');
    spec = {
      kind,
      argv: program,
      timeoutMs: values['timeout-ms'] !== undefined ? integer('--timeout-ms', values['timeout-ms'], 1, MAX_CHECK_TIMEOUT_MS) : DEFAULT_CHECK_TIMEOUT_MS,
      failure: values.fail !== undefined ? oneOf('--fail', values.fail, ['closed', 'open'] as const) : 'closed',
      concurrency: countFlag('--concurrency', values.concurrency, MAX_CHECK_CONCURRENCY) ?? DEFAULT_CHECK_CONCURRENCY,
    };
  }
  const v = await withAdmin(values, (c) => c.call('rules:check', { check: spec }));
  say(values.json ? JSON.stringify(v.check) : `content check: ${checkText(v.check)}`);
  return 0;
}

async function refusals(argv: string[]): Promise<number> {
  const { values, positionals: given } = parseFlags({ args: argv, strict: true, allowPositionals: true, options: connectionOptions });
  const [raw] = positionals(given, ['NAME']);
  const peer = name('NAME', raw!);
  const r = await withAdmin(values, (c) => c.call('rules:refusals', { peer }));
  if (values.json) {
    say(JSON.stringify(r));
    return 0;
  }
  const counts = Object.entries(r.counts);
  say(`${peer}: ${counts.length > 0 ? counts.map(([k, n]) => `${n} ${k}`).join(', ') : 'nothing refused by the rules since the contact point started'}`);
  if (r.recent.length > 0) {
    say(formatTable(['WHEN (UTC)', 'FROM', 'REASON'], r.recent.map((x) => [new Date(x.at).toISOString().replace('T', ' ').slice(0, 19) + 'Z', x.from, x.reason])));
  }
  return 0;
}

export const rulesCommands: Command[] = [
  { path: ['rules'], summary: 'show the access rules and the content check', help: RULES_HELP, run: show },
  { path: ['rules', 'show'], summary: 'show the access rules and the content check', help: RULES_HELP, run: show },
  { path: ['rules', 'set'], summary: "set a peer's or the office default's access rules", help: RULES_HELP, run: set },
  { path: ['rules', 'check'], summary: 'set the content check (none, json-depth, command)', help: RULES_HELP, run: check },
  { path: ['rules', 'refusals'], summary: 'what the rules refused for one peer', help: RULES_HELP, run: refusals },
];
