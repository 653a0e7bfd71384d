import { isIP } from 'node:net';
import { isLoopbackAddress } from '../runtime/server-lifecycle.js';
import { CliError, UsageError } from './errors.js';

/**
 * Listen addresses (--listen, --peer-listen, --admin-listen): parsing, the loopback rule for
 * the admin endpoint, and bind failures explained in terms of the flag to change.
 */
export interface Listen {
  readonly host: string;
  readonly port: number;
}

/** A listen address and the flag it came from. */
export interface ListenFlag {
  readonly flag: string;
  readonly listen: Listen;
  /** true when the flag was not given and `listen` is its default */
  readonly defaulted: boolean;
}

const HOSTNAME = /^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/i;

/** `HOST:PORT` or `[IPv6]:PORT`; port 0 means any free port. */
export function hostPort(flag: string, value: string): Listen {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(value) ?? /^([^:[\]]+):(\d+)$/.exec(value);
  if (!m) throw new UsageError(`${flag} "${value}": expected HOST:PORT such as 127.0.0.1:7901 ([::1]:7901 for IPv6; port 0 picks any free port)`);
  const host = m[1]!;
  const port = Number(m[2]);
  const bracketed = value.startsWith('[');
  if (bracketed ? isIP(host) !== 6 : isIP(host) === 0 && !HOSTNAME.test(host)) {
    throw new UsageError(`${flag} "${value}": "${host}" is not an IP address or host name`);
  }
  if (!Number.isInteger(port) || port > 65_535) throw new UsageError(`${flag} "${value}": port ${m[2]} is not between 0 and 65535`);
  return { host, port };
}

export function formatListen(l: Listen): string {
  return isIP(l.host) === 6 ? `[${l.host}]:${l.port}` : `${l.host}:${l.port}`;
}

/** The loopback interface only: 127.0.0.0/8, ::1, localhost. */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase();
  return h === 'localhost' || isLoopbackAddress(h);
}

export function listenFlag(flag: string, value: string | undefined, fallback: string): ListenFlag {
  return { flag, listen: hostPort(flag, value ?? fallback), defaulted: value === undefined };
}

/** --admin-listen: loopback only unless --admin-listen-any says otherwise. */
export function adminListenFlag(value: string | undefined, fallback: string, any: boolean): ListenFlag {
  const l = listenFlag('--admin-listen', value, fallback);
  if (!any && !isLoopbackHost(l.listen.host)) {
    throw new UsageError(
      `--admin-listen "${value ?? fallback}": ${l.listen.host} is not a loopback address. The admin endpoint approves and revokes ` +
        `peers and sees all traffic, guarded only by a token over plain http, so it stays on this machine (reach it from ` +
        `elsewhere through an SSH tunnel). To expose it anyway, add --admin-listen-any`,
    );
  }
  return l;
}

/** A bind failure (port busy, no such address, privileged port) as a CliError naming the flag. */
export function listenError(err: unknown, l: ListenFlag): Error {
  const code = (err as NodeJS.ErrnoException).code;
  const at = formatListen(l.listen);
  const which = l.defaulted ? `${at} (the default for ${l.flag})` : `${l.flag} ${at}`;
  const other = formatListen({ host: l.listen.host, port: l.listen.port === 0 ? 0 : Math.min(65_535, l.listen.port + 10) });
  const alternative = `choose another port, e.g. ${l.flag} ${other}, or port 0 for any free port`;
  switch (code) {
    case 'EADDRINUSE':
      return new CliError(`${which}: the port is already in use (is another contact point or relay running?); ${alternative}`);
    case 'EACCES':
      return new CliError(`${which}: permission denied (ports below 1024 need privileges); ${alternative}`);
    case 'EADDRNOTAVAIL':
      return new CliError(`${which}: no network interface of this machine has the address ${l.listen.host}`);
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return new CliError(`${which}: cannot resolve the host name ${l.listen.host}`);
    default:
      return err instanceof Error ? err : new Error(String(err));
  }
}
