import { parseArgs, type ParseArgsConfig } from 'node:util';
import { isIP } from 'node:net';
import { parseCidr } from '../contact-point/policy.js';
import { parseBindRule, parseTargetRule, type TargetRule } from '../contact-point/port-policy.js';
import { nameProblem } from '../protocol/name.js';
import { isLogFormat, isLogLevel, LOG_FORMATS, type LogFormat, type LogLevel } from '../runtime/logger.js';
import { UsageError } from './errors.js';

/**
 * Command-line parsing: one `Command` per leaf of the command tree, flags parsed strictly by
 * node:util parseArgs, and validators that turn a bad value into a UsageError naming the
 * flag, the value and the reason.
 */
export interface Command {
  /** words after `contact-point`, e.g. ['relay', 'credential', 'add'] */
  readonly path: readonly string[];
  /** one line for the parent's help */
  readonly summary: string;
  readonly help: string;
  /** `argv`: everything after the path words, less the flags every command takes (RunContext) */
  run(argv: string[], ctx: RunContext): Promise<number>;
}

/** What the flags every command takes decided, parsed once by the command tree (core/cli.ts). */
export interface RunContext {
  /** --log-format, or $CONTACT_POINT_LOG_FORMAT: how log lines and error messages on stderr are written */
  readonly logFormat: LogFormat;
}

export const LOG_FORMAT_ENV = 'CONTACT_POINT_LOG_FORMAT';

/** The help line of --log-format, its description starting at `column`. */
export function logFormatHelp(column: number): string {
  return `${'  --log-format FORMAT'.padEnd(column)}text or json (one object a line; default text, or $${LOG_FORMAT_ENV})`;
}

/**
 * Takes `--log-format FORMAT` (or `--log-format=FORMAT`) out of a command's arguments, before a
 * `--` terminator, and checks it; without the flag, $CONTACT_POINT_LOG_FORMAT; else text.
 * Text is the default whether or not stderr is a terminal, so a command's output does not change
 * with where it runs: a service asks for json explicitly (deploy/ does).
 */
export function takeLogFormat(argv: readonly string[], env: NodeJS.ProcessEnv): { logFormat: LogFormat; rest: string[] } {
  const rest: string[] = [];
  let given: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      rest.push(...argv.slice(i));
      break;
    }
    if (a === '--log-format') {
      const v = argv[i + 1];
      if (v === undefined || v.startsWith('-')) throw new UsageError(`--log-format needs a value: ${LOG_FORMATS.join(' or ')}`);
      given = v;
      i++;
    } else if (a.startsWith('--log-format=')) {
      given = a.slice('--log-format='.length);
    } else {
      rest.push(a);
    }
  }
  if (given !== undefined) return { logFormat: logFormat('--log-format', given), rest };
  const fromEnv = env[LOG_FORMAT_ENV];
  return { logFormat: fromEnv === undefined || fromEnv === '' ? 'text' : logFormat(LOG_FORMAT_ENV, fromEnv), rest };
}

function logFormat(what: string, value: string): LogFormat {
  if (!isLogFormat(value)) throw new UsageError(`${what} "${value}": expected ${LOG_FORMATS.join(' or ')}`);
  return value;
}

/**
 * One flag's help: its description from `column` on, over several lines; a flag too long for
 * the column gets its description on the lines below it.
 */
export function flagHelp(column: number, flag: string, lines: readonly string[]): string {
  return (`  ${flag}`.length < column ? lines : ['', ...lines])
    .map((l, i) => (i === 0 ? `  ${flag}`.padEnd(column) : ' '.repeat(column)) + l)
    .join('\n')
    .replace(/ +$/m, '');
}

/** `--help` / `-h` anywhere before a `--` terminator. */
export function wantsHelp(argv: readonly string[]): boolean {
  for (const a of argv) {
    if (a === '--') return false;
    if (a === '--help' || a === '-h') return true;
  }
  return false;
}

/** Flags people try that would put a secret in argv, where `ps` shows it to every local user. */
const SECRET_FLAGS: Readonly<Record<string, string>> = {
  '--credential': 'use --credential-file FILE or the CONTACT_POINT_CREDENTIAL environment variable',
  '--secret': 'use --credential-file FILE or the CONTACT_POINT_CREDENTIAL environment variable',
  '--token': 'set the CONTACT_POINT_ADMIN_TOKEN environment variable',
  '--join-code': 'use --join-code-file FILE',
};

/** parseArgs in strict mode, its errors rephrased as UsageErrors. */
export function parseFlags<T extends ParseArgsConfig & { strict: true }>(config: T): ReturnType<typeof parseArgs<T>> {
  try {
    return parseArgs(config);
  } catch (err: unknown) {
    throw new UsageError(describeParseError(err));
  }
}

function describeParseError(err: unknown): string {
  const e = err as { code?: string; message?: string };
  const message = e.message ?? String(err);
  const quoted = /'([^']*)'/.exec(message)?.[1] ?? '';
  const flag = quoted.split(/[ =]/)[0] ?? quoted;
  switch (e.code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION': {
      const secret = SECRET_FLAGS[flag];
      if (secret) return `unknown flag ${flag}: secrets are never taken on the command line (ps shows every process's arguments); ${secret}`;
      return `unknown flag ${flag}`;
    }
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE':
      if (message.includes('does not take an argument')) return `${flag} is a switch and takes no value`;
      if (message.includes('ambiguous')) return `${flag} needs a value, but the next word starts with "-" (write ${flag}=VALUE if that is the value)`;
      return `${flag} needs a value`;
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL':
      return `unexpected argument "${quoted}"`;
    default:
      return message;
  }
}

/** A mandatory flag: its value, or a UsageError saying it is missing. */
export function required<T>(flag: string, value: T | undefined, what?: string): T {
  if (value === undefined) throw new UsageError(`${flag} is required${what ? ` (${what})` : ''}`);
  return value;
}

/** Refuses two flags that exclude each other. */
export function exclusive(a: string, aSet: boolean, b: string, bSet: boolean): void {
  if (aSet && bSet) throw new UsageError(`${a} and ${b} cannot be used together`);
}

/** Positionals: exactly the names listed (e.g. ['NAME']), no more, no fewer. */
export function positionals(given: readonly string[], names: readonly string[]): string[] {
  if (given.length > names.length) throw new UsageError(`unexpected argument "${given[names.length]}"`);
  if (given.length < names.length) throw new UsageError(`missing ${names.slice(given.length).join(' ')}`);
  return [...given];
}

/** A ws:// or wss:// URL (relay, peer port, admin endpoint). */
export function wsUrl(flag: string, value: string, example: string): string {
  let u: URL;
  try {
    u = new URL(value);
  } catch {
    throw new UsageError(`${flag} "${value}": not a URL; expected something like ${example}`);
  }
  if (u.protocol !== 'ws:' && u.protocol !== 'wss:') {
    throw new UsageError(`${flag} "${value}": expected a ws:// or wss:// URL such as ${example}, not ${u.protocol}//`);
  }
  // The scheme in lower case (URL takes WSS:// too): the value travels as typed otherwise, and
  // what reads it later may match the scheme exactly (a cluster node's advertised URL did).
  return value.trim().replace(/^[a-z][a-z0-9+.-]*:/i, (scheme) => scheme.toLowerCase());
}

/** `--cluster`: one or more comma-separated nats:// (or tls://) URLs of the cluster's NATS servers. */
export function natsUrls(flag: string, value: string): string[] {
  const urls = value.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (urls.length === 0) throw new UsageError(`${flag} needs at least one URL such as nats://127.0.0.1:4222`);
  for (const url of urls) {
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      throw new UsageError(`${flag} "${url}": not a URL; expected something like nats://127.0.0.1:4222`);
    }
    if (u.protocol !== 'nats:' && u.protocol !== 'tls:') throw new UsageError(`${flag} "${url}": expected a nats:// or tls:// URL such as nats://127.0.0.1:4222, not ${u.protocol}//`);
    if (u.hostname === '') throw new UsageError(`${flag} "${url}": no host; expected something like nats://127.0.0.1:4222`);
  }
  return urls;
}

/** Most JetStream replicas a relay cluster's buckets take (NATS clusters are odd-sized, usually 3 or 5). */
export const MAX_CLUSTER_REPLICAS = 5;

/** `--cluster-replicas N` (only with --cluster): undefined when absent. */
export function clusterReplicas(value: string | undefined, cluster: boolean): number | undefined {
  if (value !== undefined && !cluster) throw new UsageError('--cluster-replicas needs --cluster (the NATS servers of the relay cluster)');
  return countFlag('--cluster-replicas', value, MAX_CLUSTER_REPLICAS);
}

/** An HTTP CONNECT proxy URL. */
export function proxyUrl(flag: string, value: string): string {
  let u: URL;
  try {
    u = new URL(value);
  } catch {
    throw new UsageError(`${flag} "${value}": not a URL; expected something like http://proxy.example.com:3128`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw new UsageError(`${flag} "${value}": expected an http:// or https:// proxy URL, not ${u.protocol}//`);
  }
  return value;
}

/** A peer name, contact point id or external peer id. */
export function name(flag: string, value: string): string {
  const problem = nameProblem(value);
  if (problem) throw new UsageError(`${flag} "${value}" ${problem}`);
  return value;
}

export function cidr(flag: string, value: string): string {
  try {
    parseCidr(value);
  } catch (err: unknown) {
    throw new UsageError(`${flag}: ${(err as Error).message}`);
  }
  return value.trim();
}

export function logLevel(flag: string, value: string): LogLevel {
  if (!isLogLevel(value)) throw new UsageError(`${flag} "${value}": expected one of debug, info, warn, error, silent`);
  return value;
}

export function integer(flag: string, value: string, min: number, max: number): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < min || n > max) {
    throw new UsageError(`${flag} "${value}": expected a whole number from ${min} to ${max}`);
  }
  return n;
}

/** The largest value a count or limit flag (connections, streams, slots, requests) takes. */
export const MAX_COUNT_FLAG = 1_000_000;

/** An optional count or limit flag: undefined when absent, else a whole number from 1 to `max`. */
export function countFlag(flag: string, value: string | undefined, max = MAX_COUNT_FLAG): number | undefined {
  return value === undefined ? undefined : integer(flag, value, 1, max);
}

export function oneOf<const T extends string>(flag: string, value: string, choices: readonly T[]): T {
  if (!(choices as readonly string[]).includes(value)) throw new UsageError(`${flag} "${value}": expected one of ${choices.join(', ')}`);
  return value as T;
}

/** A comma-separated list, each item one of `choices` (e.g. `--rights send,mediate`). */
export function listOf<const T extends string>(flag: string, value: string, choices: readonly T[]): T[] {
  const items = value.split(',').map((s) => s.trim());
  const bad = items.find((s) => !(choices as readonly string[]).includes(s));
  if (bad !== undefined) throw new UsageError(`${flag} "${value}": "${bad}" is not one of ${choices.join(', ')}`);
  return [...new Set(items as T[])];
}

/** Longest port policy rule the admin API and the state file take. */
export const MAX_PORT_RULE_LENGTH = 80;

/** A port mediation target rule (`192.168.1.0/24:80,443`), checked as the contact point will. */
export function targetRule(flag: string, value: string): TargetRule {
  if (value.trim().length > MAX_PORT_RULE_LENGTH) throw new UsageError(`${flag} "${value}": a rule is at most ${MAX_PORT_RULE_LENGTH} characters`);
  try {
    return parseTargetRule(value);
  } catch (err: unknown) {
    throw new UsageError(`${flag}: ${(err as Error).message}`);
  }
}

/** A port mediation listen rule (`tcp:8000-8100`, `udp:5000`, `192.168.1.10:tcp:8080`). */
export function listenRule(flag: string, value: string): string {
  if (value.trim().length > MAX_PORT_RULE_LENGTH) throw new UsageError(`${flag} "${value}": a rule is at most ${MAX_PORT_RULE_LENGTH} characters`);
  try {
    return parseBindRule(value).text;
  } catch (err: unknown) {
    throw new UsageError(`${flag}: ${(err as Error).message}`);
  }
}

/** `HOST:PORT` or `[IPv6]:PORT`, HOST an IP address or a host name. */
export function hostPort(what: string, value: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d+)$/.exec(value.trim());
  const example = 'expected HOST:PORT such as 192.168.1.20:80 or printer.lan:631 ([ADDRESS]:PORT for IPv6)';
  if (!m) throw new UsageError(`${what} "${value}": ${example}`);
  const host = (m[1] ?? m[2]!).toLowerCase();
  if (m[1] !== undefined && isIP(host) !== 6) throw new UsageError(`${what} "${value}": "${host}" in brackets is not an IPv6 address`);
  if (isIP(host) === 0 && !/^[a-z0-9.-]{1,253}$/.test(host)) throw new UsageError(`${what} "${value}": "${host}" is neither an IP address nor a host name`);
  const port = Number(m[3]);
  if (port < 1 || port > 65535) throw new UsageError(`${what} "${value}": port ${m[3]} is not 1-65535`);
  return { host, port };
}
