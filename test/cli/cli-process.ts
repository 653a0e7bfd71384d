/**
 * Runs the real, built CLI (`node bin/contact-point.js ...`) as child processes, as a user
 * would. Long-running commands are waited on through their `{"event":"ready"}` line (never log
 * text); every wait is bounded, and killAll() ends whatever a test left running.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeAll, beforeEach } from 'vitest';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const BIN = join(ROOT, 'bin/contact-point.js');

/** The CLI tests run the compiled CLI; `npm test` builds it first. */
export function requireCliBuild(): void {
  if (!existsSync(join(ROOT, 'dist/core/cli.js'))) {
    throw new Error('dist/core/cli.js is missing: run `npm run build` first (`npm test` builds before it tests)');
  }
}

/** A temp folder that is also the children's HOME, so nothing touches the real ~/.contact-point. */
export async function tempHome(): Promise<{ path: string; remove(): Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), 'cp-cli-'));
  return { path, remove: () => rm(path, { recursive: true, force: true }) };
}

export function childEnv(home: string, extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, HOME: home, ...extra };
  for (const k of ['CONTACT_POINT_STATE', 'CONTACT_POINT_CREDENTIAL', 'CONTACT_POINT_ADMIN_TOKEN', 'CONTACT_POINT_LOG_FORMAT', 'http_proxy', 'HTTP_PROXY', 'https_proxy', 'HTTPS_PROXY', 'all_proxy', 'ALL_PROXY']) {
    if (!(k in extra)) delete env[k];
  }
  return env;
}

const running = new Set<ChildProcess>();

export interface RunResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface RunOptions {
  readonly home: string;
  readonly env?: Record<string, string>;
  readonly input?: string;
  readonly timeoutMs?: number;
  /** instead of `node bin/contact-point.js` (for commands the CLI printed itself) */
  readonly argv0?: readonly string[];
}

/**
 * Short commands (runCli) running at once in this test process; more wait their turn. A file
 * that starts thirty at once (usage.test.ts) would otherwise have each take seconds on two
 * cores, and a loaded host push some past their time limit.
 */
const MAX_CONCURRENT_RUNS = 4;
let runs = 0;
const runQueue: (() => void)[] = [];

/** Runs a command to completion; rejects if it takes longer than timeoutMs from its start (time waiting for a turn not counted). */
export async function runCli(args: readonly string[], o: RunOptions): Promise<RunResult> {
  if (runs >= MAX_CONCURRENT_RUNS) await new Promise<void>((resolve) => runQueue.push(resolve));
  runs++;
  try {
    return await runOne(args, o);
  } finally {
    runs--;
    runQueue.shift()?.();
  }
}

function runOne(args: readonly string[], o: RunOptions): Promise<RunResult> {
  const timeoutMs = o.timeoutMs ?? 10_000;
  const proc = spawn(process.execPath, [...(o.argv0 ?? [BIN]), ...args], { cwd: ROOT, env: childEnv(o.home, o.env ?? {}), stdio: ['pipe', 'pipe', 'pipe'] });
  running.add(proc);
  let stdout = '';
  let stderr = '';
  proc.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  proc.stdin.end(o.input ?? '');
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`contact-point ${args.join(' ')} did not finish within ${timeoutMs} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, timeoutMs);
    proc.once('close', (code) => {
      clearTimeout(timer);
      running.delete(proc);
      resolve({ code, stdout, stderr });
    });
  });
}

export interface Service {
  readonly proc: ChildProcess;
  /** the ready line's fields */
  readonly ready: Record<string, unknown>;
  /** every JSON line so far on stdout */
  readonly events: Record<string, unknown>[];
  stdout(): string;
  stderr(): string;
  /** resolves with the first JSON event (already seen or coming) matching `pred` */
  waitForEvent(pred: (e: Record<string, unknown>) => boolean, what: string, timeoutMs?: number): Promise<Record<string, unknown>>;
  /** resolves with the exit code (null when killed by a signal) */
  exited(timeoutMs?: number): Promise<number | null>;
  /** sends `signal` and resolves with the exit code */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<number | null>;
}

/** Starts a long-running command and resolves once it printed `{"event":"ready",...}`. */
export function startCli(args: readonly string[], o: RunOptions): Promise<Service> {
  const timeoutMs = o.timeoutMs ?? 10_000;
  const proc = spawn(process.execPath, [...(o.argv0 ?? [BIN]), ...args], { cwd: ROOT, env: childEnv(o.home, o.env ?? {}), stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(proc);
  let out = '';
  let err = '';
  const events: Record<string, unknown>[] = [];
  const waiters = new Set<() => void>();
  proc.stderr.on('data', (d: Buffer) => (err += d.toString()));
  createInterface({ input: proc.stdout }).on('line', (line) => {
    out += line + '\n';
    try {
      const j = JSON.parse(line) as unknown;
      if (j && typeof j === 'object' && !Array.isArray(j)) events.push(j as Record<string, unknown>);
    } catch {
      // a text line
    }
    for (const w of waiters) w();
  });
  let exitCode: number | null | undefined;
  const exit = new Promise<number | null>((resolve) =>
    proc.once('exit', (code) => {
      running.delete(proc);
      exitCode = code;
      for (const w of waiters) w();
      resolve(code);
    }),
  );
  const describe = (): string => `contact-point ${args.join(' ')}\nstdout: ${out}\nstderr: ${err}`;

  const waitForEvent = (pred: (e: Record<string, unknown>) => boolean, what: string, ms = 10_000): Promise<Record<string, unknown>> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        const hit = events.find(pred);
        if (hit) {
          done();
          resolve(hit);
        } else if (exitCode !== undefined) {
          done();
          reject(new Error(`exited (${exitCode}) before ${what}: ${describe()}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`no ${what} within ${ms} ms: ${describe()}`));
      }, ms);
      const done = (): void => {
        clearTimeout(timer);
        waiters.delete(check);
      };
      waiters.add(check);
      check();
    });

  const exited = (ms = 10_000): Promise<number | null> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`did not exit within ${ms} ms: ${describe()}`)), ms);
      void exit.then((code) => {
        clearTimeout(timer);
        resolve(code);
      });
    });

  return waitForEvent((e) => e.event === 'ready', 'ready line', timeoutMs).then((ready) => ({
    proc,
    ready,
    events,
    stdout: () => out,
    stderr: () => err,
    waitForEvent,
    exited,
    stop: (signal = 'SIGTERM', ms = 10_000) => {
      if (exitCode === undefined) proc.kill(signal);
      return exited(ms);
    },
  }));
}

/** SIGKILLs every child a test left running. */
export async function killAll(): Promise<void> {
  await Promise.all(
    [...running].map(
      (p) =>
        new Promise<void>((resolve) => {
          if (p.exitCode !== null || p.signalCode !== null) return resolve();
          p.once('exit', () => resolve());
          p.kill('SIGKILL');
        }),
    ),
  );
  running.clear();
}

/** Splits a command line the CLI printed (words, and 'single-quoted' words) into arguments. */
export function shellWords(line: string): string[] {
  const words: string[] = [];
  const re = /'((?:[^']|'\\'')*)'|(\S+)/g;
  for (let m = re.exec(line); m; m = re.exec(line)) words.push(m[1] !== undefined ? m[1].replace(/'\\''/g, "'") : m[2]!);
  return words;
}

/** What cliSuite() gives a CLI test file: its HOME and the two ways to run the CLI with it. */
export interface CliSuite {
  /** the current test's HOME: a fresh temp folder per test */
  readonly home: string;
  /** runs a command to its end with that HOME (and `env` on top of it) */
  readonly cli: (args: readonly string[], env?: Record<string, string>) => Promise<RunResult>;
  /** starts a long-running command with that HOME, resolving at its ready line */
  readonly start: (args: readonly string[], o?: Omit<RunOptions, 'home'>) => Promise<Service>;
  /** `fn` runs after the test, once its processes are killed and before its HOME is removed */
  readonly cleanup: (fn: () => unknown) => void;
}

/**
 * The frame every CLI test file shares, set up by one call at its top level: the build is
 * checked once, each test gets a fresh HOME, and after each test every process it started is
 * killed, its cleanups run (last first), and its HOME is removed.
 */
export function cliSuite(): CliSuite {
  let home: Awaited<ReturnType<typeof tempHome>> | undefined;
  const cleanups: (() => unknown)[] = [];
  const current = (): string => {
    if (!home) throw new Error('cliSuite: no test is running');
    return home.path;
  };
  beforeAll(() => requireCliBuild());
  beforeEach(async () => {
    home = await tempHome();
  });
  afterEach(async () => {
    await killAll();
    for (const fn of cleanups.splice(0).reverse()) await fn();
    await home?.remove();
    home = undefined;
  });
  return {
    get home() {
      return current();
    },
    cli: (args, env = {}) => runCli(args, { home: current(), env }),
    start: (args, o = {}) => startCli(args, { ...o, home: current() }),
    cleanup: (fn) => void cleanups.push(fn),
  };
}

/**
 * A relay (`relay --listen 127.0.0.1:0`) with a credential for contact point acme-hq, and the
 * `serve` command line for it (peer port and admin endpoint on loopback port 0, state in
 * HOME/cp): for tests that start, kill and restart serve themselves.
 */
export async function relayForServe(suite: CliSuite): Promise<{ serveArgs: string[]; cpState: string }> {
  const relayState = join(suite.home, 'relay');
  const cpState = join(suite.home, 'cp');
  const cpCred = join(suite.home, 'acme-hq.credential');
  const add = await suite.cli(['relay', 'credential', 'add', '--kind', 'contact-point', '--id', 'acme-hq', '--out', cpCred, '--state', relayState]);
  if (add.code !== 0) throw new Error(`relay credential add failed (${add.code}): ${add.stderr}`);
  const relay = await suite.start(['relay', '--listen', '127.0.0.1:0', '--state', relayState, '--json']);
  const serveArgs = [
    'serve', '--relay', String(relay.ready.url), '--id', 'acme-hq', '--credential-file', cpCred,
    '--peer-listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--state', cpState, '--json', '--log-level', 'warn',
  ];
  return { serveArgs, cpState };
}

/** What operatorSetup() started, and the flags that make a command the operator `tech`. */
export interface OperatorSetup {
  readonly relayUrl: string;
  readonly relayState: string;
  readonly cpState: string;
  /** `--relay URL --id tech --credential-file FILE` */
  readonly asTech: string[];
}

/**
 * For the operator tests: credentials acme-hq (contact point) and tech (external, send and
 * mediate), a relay (with `relayFlags`) and `serve` as acme-hq allowing 127.0.0.1 at each of
 * `targets` (with `serveFlags`), all with the suite's HOME.
 */
export async function operatorSetup(suite: CliSuite, o: { targets: readonly number[]; serveFlags?: readonly string[]; relayFlags?: readonly string[] }): Promise<OperatorSetup> {
  const relayState = join(suite.home, 'relay');
  const cpState = join(suite.home, 'cp');
  const cred = (id: string): string => join(suite.home, `${id}.credential`);
  for (const [kind, id, rights] of [
    ['contact-point', 'acme-hq', 'send'],
    ['external', 'tech', 'send,mediate'],
  ] as const) {
    const r = await suite.cli(['relay', 'credential', 'add', '--kind', kind, '--id', id, '--rights', rights, '--out', cred(id), '--state', relayState]);
    if (r.code !== 0) throw new Error(`relay credential add ${id}: exit ${r.code}: ${r.stderr}`);
  }
  const relay = await suite.start(['relay', '--listen', '127.0.0.1:0', '--state', relayState, '--json', '--log-level', 'warn', ...(o.relayFlags ?? [])]);
  const relayUrl = String(relay.ready.url);
  await suite.start([
    'serve', '--relay', relayUrl, '--id', 'acme-hq', '--credential-file', cred('acme-hq'),
    '--peer-listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--state', cpState, '--json', '--log-level', 'warn',
    ...o.targets.flatMap((p) => ['--allow-target', `127.0.0.1/32:${p}`]), ...(o.serveFlags ?? []),
  ]);
  return { relayUrl, relayState, cpState, asTech: ['--relay', relayUrl, '--id', 'tech', '--credential-file', cred('tech')] };
}
