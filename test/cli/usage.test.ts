import { createHash } from 'node:crypto';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PeerClient } from '../../core/peer/peer-client.js';
import { VERSION } from '../../core/version.js';
import { cliSuite, startCli } from './cli-process.js';

const suite = cliSuite();
const { cli } = suite;

describe('contact-point help and version', () => {
  it('prints --version, top-level help, and help for every command', async () => {
    const [version, top, ...commands] = await Promise.all([
      cli(['--version']),
      cli(['--help']),
      cli(['relay', 'credential', 'add', '--help']),
      cli(['serve', '--bogus', '--help']),
      cli(['peers', 'approve', '--help']),
      cli(['peer', 'send', '-h']),
      cli(['expose', '--help']),
      cli(['ports', 'policy', 'set', '--help']),
    ]);
    expect(version).toMatchObject({ code: 0, stdout: `${VERSION}\n` });
    expect(top.code).toBe(0);
    for (const word of ['start', 'relay credential add', 'serve', 'peers approve NAME', 'policy set', 'status', 'peer join', 'peer send', 'expose CP HOST:PORT', 'ports [list]', 'ports close ID', 'ports policy set']) {
      expect(top.stdout).toContain(word);
    }
    for (const c of commands) {
      expect(c.code, c.stderr).toBe(0);
      expect(c.stdout).toMatch(/^Usage: contact-point /);
    }
    expect(commands[1]!.stdout).toContain('ps shows'); // serve explains why secrets are never arguments
    expect(commands[1]!.stdout).toMatch(/port policy,\s+which is EMPTY by default: every such request is refused/);
    expect(commands[4]!.stdout).toContain('--rights send,mediate'); // expose says which right the operator needs
    expect(commands[5]!.stdout).toContain('ADDRESS[/PREFIX][:PORTS]'); // the rule syntax
  });
});

describe('bad command lines exit 2 and name the flag, the value and why', () => {
  it('refuses unknown flags, bad values, missing secrets and a non-loopback admin endpoint', async () => {
    const credFile = join(suite.home, 'cp.credential');
    await writeFile(credFile, 'cpk_x\n', { mode: 0o600 });
    const serve = ['serve', '--relay', 'ws://127.0.0.1:9/v1', '--id', 'acme-hq'];
    const cases: [string[], RegExp][] = [
      [['relay', '--bogus'], /unknown flag --bogus/],
      [['relay', '--listen', 'nohost'], /--listen "nohost": expected HOST:PORT/],
      [['relay', '--tls-cert', join(suite.home, 'missing.pem'), '--tls-key', join(suite.home, 'missing.key')], /--tls-cert ".*missing\.pem": cannot read it: no such file/],
      [[...serve, '--credential-file', credFile, '--auto-approve-subnet', '10.0.0.0/33'], /--auto-approve-subnet: "10\.0\.0\.0\/33": prefix \/33 is too long for IPv4/],
      [serve, /missing credential: give --credential-file FILE or set CONTACT_POINT_CREDENTIAL/],
      [[...serve, '--credential-file', join(suite.home, 'nope')], /--credential-file ".*nope": cannot read it: no such file/],
      [[...serve, '--credential', 'cpk_secret'], /unknown flag --credential: secrets are never taken on the command line/],
      [[...serve, '--credential-file', credFile, '--admin-listen', '0.0.0.0:7902'], /--admin-listen "0\.0\.0\.0:7902": 0\.0\.0\.0 is not a loopback address.*--admin-listen-any/],
      [[...serve, '--credential-file', credFile, '--peer-listen', '10.0.0.1:x'], /--peer-listen "10\.0\.0\.1:x": expected HOST:PORT/],
      [['serve', '--relay', 'http://relay.example.com', '--id', 'acme-hq'], /--relay "http:\/\/relay\.example\.com": expected a ws:\/\/ or wss:\/\/ URL/],
      [['peer', 'send', '--to', 'printer', '--cp', 'ws://127.0.0.1:9/v1/peer', '--name', 'x', 'hi'], /--to "printer": expected NAME@DOMAIN/],
      [['relay', 'credential', 'add', '--kind', 'external', '--id', 'x', '--rights', 'send,fly'], /--rights "send,fly": "fly" is not one of send, mediate/],
      [['peers', 'frobnicate'], /unknown subcommand "frobnicate" for peers/],
      [[...serve, '--credential-file', credFile, '--allow-target', '192.168.1.0/33:80'], /--allow-target: target rule "192\.168\.1\.0\/33:80": prefix must be 0-32/],
      [[...serve, '--credential-file', credFile, '--allow-target', 'printer.lan:80'], /--allow-target: target rule "printer\.lan:80": "printer\.lan" is not an IP address/],
      [[...serve, '--credential-file', credFile, '--allow-listen', 'tcp:0-80'], /--allow-listen: listen rule "tcp:0-80": "0-80" is not a port or port range/],
      [['start', '--allow-target', '10.0.0.1:99999'], /--allow-target: target rule "10\.0\.0\.1:99999"/],
      [['expose', 'acme-hq', '192.168.1.20'], /HOST:PORT "192\.168\.1\.20": expected HOST:PORT/],
      [['expose', 'acme-hq', '192.168.1.20:70000'], /HOST:PORT "192\.168\.1\.20:70000": port 70000 is not 1-65535/],
      [['expose', 'acme-hq', 'printer.lan:53', '--udp'], /a UDP target must be an IP address/],
      [['expose', 'acme-hq', '192.168.1.20:80', '--relay', 'ws://127.0.0.1:9/v1'], /--id is required/],
      [['expose', 'acme-hq', '192.168.1.20:80', '--relay', 'ws://127.0.0.1:9/v1', '--id', 'tech'], /missing credential: give --credential-file FILE or set CONTACT_POINT_CREDENTIAL/],
      [['expose', 'acme-hq', '192.168.1.20:80', '--public-port', '0'], /--public-port "0": expected a whole number from 1 to 65535/],
      [['ports', 'close', 'seven'], /ID "seven": expected a whole number/],
      [['ports', 'policy', 'set'], /nothing to set: give --target RULE, --listen RULE or --clear/],
      [['ports', 'policy', 'set', '--target', '10.0.0.0/8:80-'], /--target: target rule "10\.0\.0\.0\/8:80-"/],
      [['ports', 'policy', 'frobnicate'], /unknown subcommand "frobnicate" for ports policy/],
      [['relay', '--no-udp', '--udp-advertise-port', '7900'], /--no-udp and --udp-advertise-port cannot be used together/],
    ];
    const results = await Promise.all(cases.map(([args]) => cli(args)));
    results.forEach((r, i) => {
      const [args, pattern] = cases[i]!;
      expect(r.code, `${args.join(' ')}\n${r.stderr}`).toBe(2);
      expect(r.stderr, args.join(' ')).toMatch(pattern);
      expect(r.stderr).toMatch(/Run `contact-point[^`]* --help` for usage\./);
      expect(r.stdout).toBe('');
    });
  });
});

describe('connection limit flags', () => {
  it('refuses a limit that is not a whole number in range, naming the flag (exit 2)', async () => {
    const credFile = join(suite.home, 'cp.credential');
    await writeFile(credFile, 'cpk_x\n', { mode: 0o600 });
    const serve = ['serve', '--relay', 'ws://127.0.0.1:9/v1', '--id', 'acme-hq', '--credential-file', credFile];
    const cases: [string[], RegExp][] = [
      [['expose', 'acme-hq', '192.168.1.20:80', '--max-connections', '0'], /--max-connections "0": expected a whole number from 1 to 1000000/],
      [['expose', 'acme-hq', '192.168.1.20:161', '--udp', '--max-connections', '10'], /--max-connections is for TCP exposures/],
      [['relay', '--max-expose-connections', 'many'], /--max-expose-connections "many": expected a whole number from 1 to 1000000/],
      [['relay', '--max-expose-connections-per-cp', '0'], /--max-expose-connections-per-cp "0": expected a whole number/],
      [['relay', '--max-sessions-per-credential', '0'], /--max-sessions-per-credential "0": expected a whole number from 1 to 1024/],
      [['relay', '--max-sessions-per-credential', '2000'], /--max-sessions-per-credential "2000": expected a whole number from 1 to 1024/],
      [[...serve, '--max-streams', '0'], /--max-streams "0": expected a whole number from 1 to 1000000/],
      [[...serve, '--max-exposure-streams', '2000000'], /--max-exposure-streams "2000000": expected a whole number from 1 to 1000000/],
    ];
    const results = await Promise.all(cases.map(([args]) => cli(args)));
    results.forEach((r, i) => {
      const [args, pattern] = cases[i]!;
      expect(r.code, `${args.join(' ')}\n${r.stderr}`).toBe(2);
      expect(r.stderr, args.join(' ')).toMatch(pattern);
      expect(r.stdout).toBe('');
    });
  });
});

describe('relay connection caps', () => {
  it('refuses a cap that is not a whole number from 1, or a per-address cap above the total, naming the flags', async () => {
    const cases: [string[], RegExp][] = [
      [['relay', '--max-pending-hellos', '0'], /--max-pending-hellos "0": expected a whole number from 1 to 1000000/],
      [['relay', '--max-http-connections-per-address', 'many'], /--max-http-connections-per-address "many": expected a whole number/],
      [['relay', '--max-http-connections', '16', '--max-http-connections-per-address', '32'], /--max-http-connections-per-address 32 is more than --max-http-connections 16/],
      [['relay', '--max-pending-hellos', '8'], /--max-pending-hellos-per-address 32 is more than --max-pending-hellos 8/],
    ];
    for (const [args, pattern] of cases) {
      const r = await cli(args);
      expect(r.code, `${args.join(' ')}\n${r.stderr}`).toBe(2);
      expect(r.stderr, args.join(' ')).toMatch(pattern);
    }
  });

  it('a relay started with --max-http-connections-per-address 2 keeps only 2 idle connections from one address', async () => {
    const relay = await startCli(['relay', '--listen', '127.0.0.1:0', '--state', join(suite.home, 'relay'), '--json', '--max-http-connections-per-address', '2', '--log-level', 'error'], {
      home: suite.home,
    });
    const port = Number(new URL(String(relay.ready.url)).port);
    let closed = 0;
    const sockets = Array.from({ length: 3 }, () => connect(port, '127.0.0.1').on('close', () => closed++).on('error', () => undefined));
    try {
      const start = Date.now();
      while (closed < 1 && Date.now() - start < 5_000) await new Promise((r) => setTimeout(r, 20));
      await new Promise((r) => setTimeout(r, 200));
      expect(closed).toBe(1);
    } finally {
      for (const s of sockets) s.destroy();
      await relay.stop();
    }
  });
});

describe('relay --rate-per-sender', () => {
  it('refuses a rate that is not a whole number in range, naming the flag', async () => {
    for (const v of ['0', 'fast', '20000000']) {
      const r = await cli(['relay', '--rate-per-sender', v]);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(/--rate-per-sender "[^"]+": expected a whole number from 1 to 10000000/);
    }
  });

  it('a sender beyond the rate is refused RATE_LIMITED and sent again later; under the default, 30 messages in one turn are all answered at once', async () => {
    const burst = async (extra: string[]): Promise<{ answeredIn1s: number; retransmits: number }> => {
      const state = join(suite.home, `relay-rate-${extra.length}`);
      const add = await cli(['relay', 'credential', 'add', '--kind', 'external', '--id', 'alice', '--state', state]);
      expect(add.code, add.stderr).toBe(0);
      const relay = await startCli(['relay', '--listen', '127.0.0.1:0', '--state', state, '--json', '--log-level', 'error', ...extra], { home: suite.home });
      const alice = new PeerClient({ role: 'external', url: String(relay.ready.url), name: 'alice', secret: add.stdout.trim(), proxy: null, seal: 'off' });
      try {
        alice.start();
        await alice.ready();
        // Nobody is behind "nowhere": each message is answered UNKNOWN_CONTACT_POINT once the rate lets it through.
        let answered = 0;
        const sends = Array.from({ length: 30 }, (_, i) => alice.send('printer@nowhere', Buffer.from(`m${i}`)).then(() => undefined, () => undefined).finally(() => answered++));
        await new Promise((r) => setTimeout(r, 1_000));
        const out = { answeredIn1s: answered, retransmits: alice.stats.retransmits };
        await alice.stop();
        await Promise.allSettled(sends);
        return out;
      } finally {
        await relay.stop();
      }
    };
    const limited = await burst(['--rate-per-sender', '5']);
    // 5 a second with a 2 s burst: 10 at once, then about 5 a second
    expect(limited.answeredIn1s).toBeLessThan(20);
    expect(limited.retransmits).toBeGreaterThan(0);
    const free = await burst([]);
    expect(free).toEqual({ answeredIn1s: 30, retransmits: 0 });
  }, 20_000);
});

describe('relay credential add | list | remove', () => {
  it('shows a secret once, stores only its hash in a 0600 file, lists without secrets and removes', async () => {
    const state = join(suite.home, 'relay');
    const add = await cli(['relay', 'credential', 'add', '--kind', 'contact-point', '--id', 'acme-hq', '--state', state]);
    expect(add.code, add.stderr).toBe(0);
    const secret = add.stdout.trim();
    expect(add.stdout).toBe(`${secret}\n`); // the secret alone on stdout: `> file` captures just it
    expect(secret).toMatch(/^cpk_[A-Za-z0-9_-]{43}$/);
    expect(add.stderr).toMatch(/shown only now/);

    const out = join(suite.home, 'alice.credential');
    const addOut = await cli(['relay', 'credential', 'add', '--kind', 'external', '--id', 'alice', '--rights', 'send,mediate', '--out', out, '--state', state]);
    expect(addOut.code, addOut.stderr).toBe(0);
    expect((await stat(out)).mode & 0o777).toBe(0o600);
    const aliceSecret = (await readFile(out, 'utf8')).trim();
    expect(addOut.stdout).not.toContain(aliceSecret);

    const file = join(state, 'credentials.json');
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const stored = await readFile(file, 'utf8');
    expect(stored).not.toContain(secret);
    expect(stored).not.toContain(aliceSecret);
    expect(stored).toContain(createHash('sha256').update(secret).digest('hex'));

    const list = await cli(['relay', 'credential', 'list', '--state', state]);
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(/^KIND\s+ID\s+RIGHTS\s+CREATED\n/);
    expect(list.stdout).toMatch(/contact-point\s+acme-hq\s+send\s+\d{4}-/);
    expect(list.stdout).toMatch(/external\s+alice\s+send,mediate\s+\d{4}-/);
    expect(list.stdout).not.toContain(secret);
    expect(list.stdout).not.toMatch(/[0-9a-f]{64}/);
    const listJson = JSON.parse((await cli(['relay', 'credential', 'list', '--json', '--state', state])).stdout) as Record<string, unknown>[];
    expect(listJson.map((r) => Object.keys(r).sort())).toEqual([
      ['created', 'id', 'kind', 'rights'],
      ['created', 'id', 'kind', 'rights'],
    ]);

    const remove = await cli(['relay', 'credential', 'remove', '--kind', 'external', '--id', 'alice', '--state', state]);
    expect(remove.code, remove.stderr).toBe(0);
    expect((await cli(['relay', 'credential', 'list', '--state', state])).stdout).not.toContain('alice');
    const again = await cli(['relay', 'credential', 'remove', '--kind', 'external', '--id', 'alice', '--state', state]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/no external credential "alice"/);
  });

  it('uses ~/.contact-point/relay by default and CONTACT_POINT_STATE when set', async () => {
    const viaEnv = join(suite.home, 'elsewhere');
    await cli(['relay', 'credential', 'add', '--kind', 'external', '--id', 'bob']);
    await cli(['relay', 'credential', 'add', '--kind', 'external', '--id', 'carol'], { CONTACT_POINT_STATE: viaEnv });
    expect(await readFile(join(suite.home, '.contact-point/relay/credentials.json'), 'utf8')).toContain('"bob"');
    expect(await readFile(join(viaEnv, 'credentials.json'), 'utf8')).toContain('"carol"');
  });
});
