/**
 * How a headless contact point (`contact-point serve` or `start`) was started, and the command
 * that starts it again with a settings change (issue 16, item 7). A browser cannot restart the
 * process, so the GUI's Settings print this command; it must keep every flag the running one
 * was given (--ca, --admin-listen, the peer port's bind address...), or pasting it breaks what
 * worked. No secrets are in it: they are never arguments (files or environment variables).
 *
 * Plain TypeScript, no Node imports: the renderer builds the command from the snapshot.
 */

/** One flag as given: `['--ca', '/abs/ca.pem']`, or `['--no-proxy']` for a switch. */
export type LaunchFlag = readonly [flag: string] | readonly [flag: string, value: string];

export interface LaunchView {
  /** the words that run the CLI, e.g. `['node', 'bin/contact-point.js']` (relative to `cwd`) */
  readonly program: readonly string[];
  /** the folder it was started in */
  readonly cwd: string;
  readonly command: 'serve' | 'start';
  /** its flags as given, file paths made absolute */
  readonly flags: readonly LaunchFlag[];
  /** the peer port's bind as given or defaulted, e.g. `127.0.0.1:0` (its port may be 0: any free one) */
  readonly peerListen: string;
}

/** What the admin changed in Settings. `relayUrl` '' means the embedded demo relay (`start`). */
export interface LaunchChange {
  readonly relayUrl: string;
  readonly id: string;
  readonly peerPort: number;
}

export interface RestartCommand {
  /** one shell line */
  readonly line: string;
  /** what to do before running it (stop this one, put the credential in its file...) */
  readonly notes: readonly string[];
}

/** `start` takes these flags too; serve's others (relay, credential, trust, limits) mean nothing to it. */
const START_FLAGS = new Set(['--peer-listen', '--admin-listen', '--admin-listen-any', '--state', '--allow-target', '--allow-listen', '--log-level', '--log-format', '--json']);
/** Set from the change, not copied. */
const REPLACED = new Set(['--relay', '--id', '--peer-listen']);

/** Quotes an argument for a POSIX shell only when it needs it. */
export function shellQuote(arg: string): string {
  if (/^[\w@%+=:,./-]+$/.test(arg)) return arg;
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}

/** `host:port` with the port replaced (`[::1]:7901` keeps its brackets). */
function withPort(listen: string, port: number): string {
  const i = listen.lastIndexOf(':');
  return `${i >= 0 ? listen.slice(0, i) : listen}:${port}`;
}

/**
 * The command that runs this contact point again with `change` applied, and the steps around
 * it. `boundPeerPort`: the port the peer port is bound to now (what the form showed).
 */
export function restartCommand(launch: LaunchView, change: LaunchChange, boundPeerPort: number): RestartCommand {
  const target = change.relayUrl === '' ? 'start' : 'serve';
  const given = (f: string): string | undefined => launch.flags.find((x) => x[0] === f)?.[1];
  const notes = ['Stop the running contact point first (Ctrl-C where it runs): the new one needs its ports and state folder.'];
  const words: string[] = [...launch.program, target];
  if (target === 'serve') {
    words.push('--relay', change.relayUrl, '--id', change.id);
    const sameId = launch.command === 'serve' && given('--id') === change.id;
    const file = given('--credential-file');
    if (sameId && file !== undefined) words.push('--credential-file', file);
    else if (sameId) notes.push('The credential comes from CONTACT_POINT_CREDENTIAL, as now: set it in the shell you run this in.');
    else {
      words.push('--credential-file', `${change.id}.credential`);
      notes.push(`Put the credential the relay issued for "${change.id}" in ${change.id}.credential (mode 0600) first.`);
    }
  }
  // The bind address is kept; only the port changes, and only if the admin changed it (an
  // unchanged form shows the bound port, which may have come from port 0).
  words.push('--peer-listen', change.peerPort === boundPeerPort ? launch.peerListen : withPort(launch.peerListen, change.peerPort));
  for (const f of launch.flags) {
    if (REPLACED.has(f[0]) || f[0] === '--credential-file') continue;
    if (target === 'start' && !START_FLAGS.has(f[0])) continue;
    words.push(...f);
  }
  if (launch.program[0] === 'node' && !(launch.program[1] ?? '').startsWith('/')) notes.push(`Run it in ${launch.cwd}.`);
  return { line: words.map(shellQuote).join(' '), notes };
}
