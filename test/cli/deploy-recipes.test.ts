import { execFile, execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { cp, mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { get } from 'node:https';
import { builtinModules } from 'node:module';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { READY_PATH } from '../../core/runtime/health.js';
import { selfSignedCert } from '../net-fixtures.js';
import { cliSuite, ROOT } from './cli-process.js';

/**
 * Issue 13 item 4: the recipes in deploy/ are checked against the project, as far as this
 * machine allows. The systemd units pass `systemd-analyze verify` (with no warning: verify
 * exits 0 on unknown keys and bad values, so its output must be empty too) and their ExecStart
 * command lines run: a relay on TLS, a contact point that reaches it and reports ready. There is
 * no container engine here, so the Containerfile is read instruction by instruction and its
 * layout rebuilt in a temp folder: the build stage's tsc runs on exactly what it COPYs, the run
 * stage's files exist, its entry point starts a relay, and its HEALTHCHECK command passes
 * against it and fails once the credentials file is corrupt.
 */

const run = promisify(execFile);
const suite = cliSuite();
const { cli, start } = suite;

const SYSTEMD_ANALYZE = '/usr/bin/systemd-analyze';
const noSystemd = existsSync(SYSTEMD_ANALYZE) ? undefined : `${SYSTEMD_ANALYZE} is missing (Debian package systemd; .ci/run installs it): the units are not verified`;
if (noSystemd) console.warn(`deploy-recipes: skipping systemd-analyze verify: ${noSystemd}`);

const DEPLOY = join(ROOT, 'deploy');
const UNITS = { relay: join(DEPLOY, 'systemd/contact-point-relay.service'), serve: join(DEPLOY, 'systemd/contact-point.service') };
/** Where the units expect the project and node; the tests put this checkout and this node there. */
const INSTALLED_ROOT = '/opt/contact-point';
const INSTALLED_NODE = '/usr/bin/node';

/** A unit file's [Service] settings, each key with every value it was given. */
function serviceSettings(path: string): Map<string, string[]> {
  const settings = new Map<string, string[]>();
  let section = '';
  for (const raw of readFileSync(path, 'utf8').split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header) {
      section = header[1]!;
      continue;
    }
    const eq = line.indexOf('=');
    if (section !== 'Service' || eq === -1) continue;
    const key = line.slice(0, eq);
    settings.set(key, [...(settings.get(key) ?? []), line.slice(eq + 1)]);
  }
  return settings;
}

const one = (s: Map<string, string[]>, key: string): string => {
  const v = s.get(key);
  expect(v, key).toHaveLength(1);
  return v![0]!;
};

/** A unit's ExecStart as arguments for this machine: `%S` and `${CREDENTIALS_DIRECTORY}` replaced, node and the project where they are here. */
function execStart(s: Map<string, string[]>, vars: { stateRoot: string; credentialsDir?: string }): string[] {
  const words = one(s, 'ExecStart')
    .replaceAll('%S', vars.stateRoot)
    .replaceAll('${CREDENTIALS_DIRECTORY}', vars.credentialsDir ?? '/nonexistent')
    .split(/\s+/);
  expect(words.slice(0, 2)).toEqual([INSTALLED_NODE, `${INSTALLED_ROOT}/bin/contact-point.js`]);
  return words.slice(2);
}

/** The unit's Environment= lines, `%S` replaced. */
function environment(s: Map<string, string[]>, stateRoot: string): Record<string, string> {
  return Object.fromEntries((s.get('Environment') ?? []).map((e) => e.replaceAll('%S', stateRoot).split(/=(.*)/s).slice(0, 2) as [string, string]));
}

/** Replaces `flag VALUE` in argv (the value must be there). */
function setFlag(argv: string[], flag: string, value: string): string[] {
  const i = argv.indexOf(flag);
  expect(i, `${flag} in ${argv.join(' ')}`).toBeGreaterThan(-1);
  return [...argv.slice(0, i + 1), value, ...argv.slice(i + 2)];
}

function httpsJson(url: string, ca: string): Promise<{ status: number | undefined; body: unknown }> {
  return new Promise((resolve, reject) => {
    get(url, { ca, timeout: 5_000 }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode, body: JSON.parse(text) as unknown }));
    }).on('error', reject);
  });
}

describe('systemd units', () => {
  it.skipIf(noSystemd !== undefined)('pass systemd-analyze verify without a warning, pointed at this node and this checkout', async () => {
    const dir = join(suite.home, 'units');
    await mkdir(dir);
    for (const unit of Object.values(UNITS)) {
      const text = (await readFile(unit, 'utf8')).replaceAll(INSTALLED_NODE, process.execPath).replaceAll(INSTALLED_ROOT, ROOT);
      await writeFile(join(dir, unit.split('/').pop()!), text);
    }
    const files = Object.values(UNITS).map((u) => join(dir, u.split('/').pop()!));
    const r = await run(SYSTEMD_ANALYZE, ['verify', ...files], { env: { ...process.env, SYSTEMD_LOG_COLOR: '0' } }).catch((e: { code: number; stdout: string; stderr: string }) => e);
    expect('code' in r ? r.code : 0, r.stderr).toBe(0);
    expect(r.stderr + r.stdout).toBe('');

    // The same check fails on a misspelt setting: the empty output above means something.
    await writeFile(files[0]!, (await readFile(files[0]!, 'utf8')).replace('ProtectHome=yes', 'ProtectHome=yes\nProtectHomes=yes'));
    const bad = await run(SYSTEMD_ANALYZE, ['verify', files[0]!]).catch((e: { stderr: string }) => e);
    expect(bad.stderr).toContain("Unknown key 'ProtectHomes'");
  });

  it('run as a dedicated user with a state folder, restart on failure, hardened, with no secret in them', () => {
    for (const [which, unit] of Object.entries(UNITS)) {
      const s = serviceSettings(unit);
      expect(one(s, 'User')).toBe('contact-point');
      expect(one(s, 'StateDirectory')).toMatch(/^contact-point/);
      expect(environment(s, '/var/lib').CONTACT_POINT_STATE).toBe(`/var/lib/${one(s, 'StateDirectory')}`);
      for (const [k, v] of [
        ['Restart', 'on-failure'],
        ['NoNewPrivileges', 'yes'],
        ['ProtectSystem', 'strict'],
        ['ProtectHome', 'yes'],
        ['PrivateTmp', 'yes'],
        ['SystemCallFilter', '@system-service'],
        ['UMask', '0077'],
      ] as const) {
        expect(one(s, k), `${which}: ${k}`).toBe(v);
      }
      expect(one(s, 'RestrictAddressFamilies')).toMatch(/^AF_INET AF_INET6 AF_UNIX/);
      expect(s.has('MemoryDenyWriteExecute'), 'V8 needs W+X pages').toBe(false);
      const text = readFileSync(unit, 'utf8');
      expect(text).not.toMatch(/\b(cpk|epk)_/);
      expect(text).not.toContain('CONTACT_POINT_CREDENTIAL');
      expect(text).not.toContain('CONTACT_POINT_ADMIN_TOKEN');
    }
    const relay = serviceSettings(UNITS.relay);
    expect(one(relay, 'AmbientCapabilities')).toBe('CAP_NET_BIND_SERVICE');
    expect(one(relay, 'CapabilityBoundingSet')).toBe('CAP_NET_BIND_SERVICE');
    expect(execStart(relay, { stateRoot: '/var/lib' })).toContain('0.0.0.0:443');
    const serve = serviceSettings(UNITS.serve);
    expect(one(serve, 'CapabilityBoundingSet')).toBe('');
    // Its stdout banner carries the admin token: not into the journal.
    expect(one(serve, 'StandardOutput')).toBe('null');
    expect(execStart(serve, { stateRoot: '/var/lib' })).toEqual(expect.arrayContaining(['--credential-file', '/var/lib/contact-point/credential']));
  });

  it('start as their ExecStart says: the relay on TLS with the loaded credentials, the contact point reaching it and ready', async () => {
    const stateRoot = join(suite.home, 'var-lib');
    const creds = join(suite.home, 'credentials');
    await mkdir(creds);
    const pem = selfSignedCert(creds);
    await writeFile(join(creds, 'tls-cert'), pem.cert);
    await writeFile(join(creds, 'tls-key'), pem.key);

    const relayUnit = serviceSettings(UNITS.relay);
    const relayEnv = environment(relayUnit, stateRoot);
    const relayState = relayEnv.CONTACT_POINT_STATE!;
    const cpState = environment(serviceSettings(UNITS.serve), stateRoot).CONTACT_POINT_STATE!;
    await mkdir(cpState, { recursive: true, mode: 0o700 });
    // What the serve unit's header says to do: the credential in the state folder, mode 0600.
    const add = await cli(['relay', 'credential', 'add', '--kind', 'contact-point', '--id', 'acme-hq', '--out', join(cpState, 'credential')], { CONTACT_POINT_STATE: relayState });
    expect(add.code, add.stderr).toBe(0);
    expect(statSync(join(cpState, 'credential')).mode & 0o777).toBe(0o600);

    // Port 443 needs the unit's capability: any free port here.
    const relayArgs = setFlag(execStart(relayUnit, { stateRoot, credentialsDir: creds }), '--listen', '127.0.0.1:0');
    const relay = await start([...relayArgs, '--json'], { env: relayEnv });
    const relayUrl = String(relay.ready.url);
    expect(relayUrl).toMatch(/^wss:\/\/127\.0\.0\.1:\d+\/v1$/);
    expect(relay.ready.credentials).toBe(1);
    const relayHttps = relayUrl.replace(/^wss:/, 'https:').replace(/\/v1$/, '');
    expect(await httpsJson(`${relayHttps}${READY_PATH}`, pem.cert)).toEqual({ status: 200, body: { ready: true } });

    const serveUnit = serviceSettings(UNITS.serve);
    const serveArgs = setFlag(execStart(serveUnit, { stateRoot }), '--relay', relayUrl);
    // The test's relay has a self-signed certificate, and 7901/7902 may be taken here.
    const serve = await start([...serveArgs, '--ca', join(creds, 'tls-cert'), '--peer-listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--json'], { env: environment(serveUnit, stateRoot) });
    expect(serve.ready).toMatchObject({ contactPoint: 'acme-hq', tunnel: 'connected', stateDir: cpState });
    const admin = new URL(String(serve.ready.adminWsUrl).replace(/^ws:/, 'http:')).origin;
    const ready = await fetch(`${admin}${READY_PATH}`);
    expect(ready.status).toBe(200);
  });
});

/** The Containerfile's instructions by stage: continuation lines joined, comments dropped. */
interface Instruction {
  readonly op: string;
  readonly args: string;
}

function containerStages(path: string): Instruction[][] {
  const stages: Instruction[][] = [];
  const text = readFileSync(path, 'utf8').replace(/\\\n/g, ' ');
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([A-Z]+)\s+(.*)$/.exec(line);
    expect(m, `an instruction: ${line}`).not.toBeNull();
    const ins = { op: m![1]!, args: m![2]!.replace(/\s+/g, ' ') };
    if (ins.op === 'FROM') stages.push([]);
    expect(stages.length, 'FROM first').toBeGreaterThan(0);
    stages.at(-1)!.push(ins);
  }
  return stages;
}

const all = (stage: Instruction[], op: string): string[] => stage.filter((i) => i.op === op).map((i) => i.args);
const last = (stage: Instruction[], op: string): string => {
  const v = all(stage, op).at(-1);
  expect(v, op).toBeDefined();
  return v!;
};
const jsonArray = (args: string): string[] => JSON.parse(args) as string[];

/** COPY [--from=X] SRC... DEST */
function copies(stage: Instruction[]): { from: string | undefined; sources: string[]; dest: string }[] {
  return all(stage, 'COPY').map((args) => {
    const words = args.split(' ');
    const from = words[0]!.startsWith('--from=') ? words.shift()!.slice('--from='.length) : undefined;
    const dest = words.pop()!;
    return { from, sources: words, dest };
  });
}

/** Bare module names imported by the compiled files under `dir`. */
function packagesImported(dir: string): Set<string> {
  const names = new Set<string>();
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.js')) {
        // `from`/`import` as a keyword (after a space, `;` or a line start), not inside a string like `'from', 'to'`.
        for (const m of readFileSync(p, 'utf8').matchAll(/(?:^|[\s;])(?:from|import)\s*\(?\s*'([^'.][^']*)'/g)) {
          const spec = m[1]!;
          const name = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!;
          if (!spec.startsWith('node:') && !builtinModules.includes(name)) names.add(name);
        }
      }
    }
  };
  walk(dir);
  return names;
}

describe('the relay container recipe (deploy/relay.Containerfile)', () => {
  const FILE = join(DEPLOY, 'relay.Containerfile');

  it('builds the layout it describes from this project, runs non-root, and its HEALTHCHECK asks the readiness endpoint', async () => {
    const [build, runStage, ...more] = containerStages(FILE);
    expect(more).toEqual([]);
    expect(build![0]!.args).toMatch(/^docker\.io\/library\/node:20-[a-z]+-slim AS build$/);
    expect(runStage![0]!.args).toMatch(/^docker\.io\/library\/node:20-[a-z]+-slim$/);
    const ignored = readFileSync(join(ROOT, '.dockerignore'), 'utf8').split('\n').filter((l) => l !== '' && !l.startsWith('#'));
    const workdir = (s: Instruction[]): string => last(s, 'WORKDIR');

    // Build stage, redone in a temp folder from exactly what it COPYs: its tsc must succeed.
    const buildDir = join(suite.home, 'build');
    await mkdir(buildDir);
    for (const c of copies(build!)) {
      expect(c.from).toBeUndefined();
      for (const src of c.sources) {
        expect(existsSync(join(ROOT, src)), `COPY ${src}`).toBe(true);
        expect(ignored.some((i) => src === i || src.startsWith(`${i}/`)), `${src} is in .dockerignore`).toBe(false);
        await cp(join(ROOT, src), join(buildDir, c.dest.endsWith('/') ? src : relative(workdir(build!), join(workdir(build!), c.dest))), { recursive: true });
      }
    }
    expect(all(build!, 'RUN')).toEqual(['npm ci --ignore-scripts --no-audit --no-fund', 'npx tsc -p tsconfig.build.json']);
    await symlink(join(ROOT, 'node_modules'), join(buildDir, 'node_modules'), 'dir'); // stands in for npm ci
    execFileSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json'], { cwd: buildDir, stdio: 'pipe', timeout: 180_000 });

    // Run stage: its files, from the context and from the build stage's output.
    const appDir = join(suite.home, 'app');
    await mkdir(appDir);
    for (const c of copies(runStage!)) {
      for (const src of c.sources) {
        const from = c.from === 'build' ? join(buildDir, relative(workdir(build!), src)) : join(ROOT, src);
        expect(existsSync(from), `COPY ${c.from ? `--from=${c.from} ` : ''}${src}`).toBe(true);
        await cp(from, c.dest.endsWith('/') ? join(appDir, src.split('/').pop()!) : join(appDir, relative(workdir(runStage!), join(workdir(runStage!), c.dest))), { recursive: true });
      }
    }
    expect(all(runStage!, 'RUN')[0]).toBe('npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force');
    // --omit=dev must keep every package the compiled core imports.
    const deps = Object.keys((JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { dependencies: Record<string, string> }).dependencies);
    const imported = packagesImported(join(appDir, 'dist/core'));
    expect(imported.size).toBeGreaterThan(0);
    for (const name of imported) expect(deps, `${name} is imported by dist/core`).toContain(name);
    await symlink(join(ROOT, 'node_modules'), join(appDir, 'node_modules'), 'dir');

    // Non-root, numeric (runAsNonRoot), owning the state volume.
    const user = last(runStage!, 'USER');
    expect(user).toMatch(/^[1-9]\d*:[1-9]\d*$/);
    const volume = last(runStage!, 'VOLUME');
    expect(all(runStage!, 'RUN').join('\n')).toContain(`chown ${user} ${volume}`);
    const env = Object.fromEntries(all(runStage!, 'ENV').map((e) => e.split(/=(.*)/s).slice(0, 2) as [string, string]));
    expect(env.CONTACT_POINT_STATE).toBe(volume);

    // ENTRYPOINT + CMD, the EXPOSEd port and the HEALTHCHECK's URL agree.
    const argv = [...jsonArray(last(runStage!, 'ENTRYPOINT')), ...jsonArray(last(runStage!, 'CMD'))];
    expect(argv.slice(0, 3)).toEqual(['node', 'bin/contact-point.js', 'relay']);
    const port = argv[argv.indexOf('--listen') + 1]!.split(':').pop()!;
    expect(last(runStage!, 'EXPOSE').split(' ')).toEqual([`${port}/tcp`, `${port}/udp`]);
    const health = /^(?:--\S+ )*CMD (\[.*\])$/.exec(last(runStage!, 'HEALTHCHECK'));
    expect(health).not.toBeNull();
    const check = jsonArray(health![1]!);
    expect(check.slice(0, 2)).toEqual(['node', '-e']);
    expect(check[2]).toContain(`'http://127.0.0.1:${port}${READY_PATH}'`);

    // The image's command, run from its layout; then its health check against it.
    const state = join(suite.home, 'volume');
    await mkdir(state, { mode: 0o700 });
    const relay = await start([...setFlag(argv.slice(2), '--listen', '127.0.0.1:0'), '--json'], { argv0: [join(appDir, argv[1]!)], env: { ...env, CONTACT_POINT_STATE: state } });
    const actual = new URL(String(relay.ready.url)).port;
    const healthCheck = (): Promise<number> =>
      run(process.execPath, ['-e', check[2]!.replace(`:${port}/`, `:${actual}/`)], { cwd: appDir, timeout: 10_000 }).then(
        () => 0,
        (e: { code?: number }) => e.code ?? -1,
      );
    expect(await healthCheck()).toBe(0);
    // A corrupt credentials file: not ready, so the check fails (the relay notices within its 2 s poll).
    await writeFile(join(state, 'credentials.json'), '{"version":1,');
    const t0 = Date.now();
    let code = await healthCheck();
    while (code === 0 && Date.now() - t0 < 10_000) {
      await new Promise((r) => setTimeout(r, 200));
      code = await healthCheck();
    }
    expect(code).toBe(1);
    // Logs as the image sets them: JSON lines.
    expect(relay.stderr().trim().split('\n').every((l) => (JSON.parse(l) as { level?: string }).level !== undefined)).toBe(true);
  }, 240_000); // the build stage's tsc takes most of it, more on a loaded machine
});
