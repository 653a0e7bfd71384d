import { describe, expect, it } from 'vitest';
import { restartCommand, type LaunchView } from '../../core/admin/launch.js';

/**
 * The command headless Settings print (issue 16, item 7): every flag the running contact point
 * was given, with the change. e2e/rough-edges.test.ts runs one for real; these are the cases
 * around it (switching between serve and start, a new id, the credential in the environment).
 */

const serve: LaunchView = {
  program: ['node', 'bin/contact-point.js'],
  cwd: '/srv/cp',
  command: 'serve',
  flags: [
    ['--relay', 'wss://relay.example.com/v1'],
    ['--id', 'acme-hq'],
    ['--credential-file', '/srv/cp/acme-hq.credential'],
    ['--ca', '/srv/cp/relay ca.pem'],
    ['--admin-listen', '127.0.0.1:7912'],
    ['--peer-listen', '192.168.1.10:7901'],
    ['--no-proxy'],
    ['--allow-target', '192.168.1.0/24:80'],
    ['--allow-target', '10.0.0.5/32:22'],
  ],
  peerListen: '192.168.1.10:7901',
};

describe('the restart command of a headless contact point', () => {
  it('with nothing changed reproduces the running one, quoted for a shell', () => {
    const r = restartCommand(serve, { relayUrl: 'wss://relay.example.com/v1', id: 'acme-hq', peerPort: 7901 }, 7901);
    expect(r.line).toBe(
      "node bin/contact-point.js serve --relay wss://relay.example.com/v1 --id acme-hq --credential-file /srv/cp/acme-hq.credential --peer-listen 192.168.1.10:7901 --ca '/srv/cp/relay ca.pem' --admin-listen 127.0.0.1:7912 --no-proxy --allow-target 192.168.1.0/24:80 --allow-target 10.0.0.5/32:22",
    );
    expect(r.notes).toContain('Run it in /srv/cp.');
  });

  it('a new peer port keeps the bind address; an unchanged form keeps port 0 as given', () => {
    expect(restartCommand(serve, { relayUrl: 'wss://relay.example.com/v1', id: 'acme-hq', peerPort: 7999 }, 7901).line).toContain('--peer-listen 192.168.1.10:7999');
    const any = { ...serve, peerListen: '[::1]:0', flags: serve.flags.filter((f) => f[0] !== '--peer-listen') };
    expect(restartCommand(any, { relayUrl: 'wss://relay.example.com/v1', id: 'acme-hq', peerPort: 40123 }, 40123).line).toContain("--peer-listen '[::1]:0'");
    expect(restartCommand(any, { relayUrl: 'wss://relay.example.com/v1', id: 'acme-hq', peerPort: 7901 }, 40123).line).toContain("--peer-listen '[::1]:7901'");
  });

  it('a new id needs its own credential file, and says so', () => {
    const r = restartCommand(serve, { relayUrl: 'wss://relay.example.com/v1', id: 'branch', peerPort: 7901 }, 7901);
    expect(r.line).toContain('--id branch --credential-file branch.credential');
    expect(r.line).not.toContain('acme-hq');
    expect(r.notes.join(' ')).toContain('Put the credential the relay issued for "branch" in branch.credential');
  });

  it('a credential from CONTACT_POINT_CREDENTIAL stays there (never an argument)', () => {
    const env = { ...serve, flags: serve.flags.filter((f) => f[0] !== '--credential-file') };
    const r = restartCommand(env, { relayUrl: 'wss://relay.example.com/v1', id: 'acme-hq', peerPort: 7901 }, 7901);
    expect(r.line).not.toContain('--credential-file');
    expect(r.notes.join(' ')).toContain('CONTACT_POINT_CREDENTIAL');
  });

  it('from the demo (start) to a real relay: serve, with the demo\'s binds and port policy', () => {
    const demo: LaunchView = { program: ['contact-point'], cwd: '/home/a', command: 'start', flags: [['--admin-listen', '127.0.0.1:7902'], ['--allow-listen', 'tcp:8000-8100']], peerListen: '127.0.0.1:7901' };
    const r = restartCommand(demo, { relayUrl: 'wss://relay.example.com/v1', id: 'acme-hq', peerPort: 7901 }, 7901);
    expect(r.line).toBe(
      'contact-point serve --relay wss://relay.example.com/v1 --id acme-hq --credential-file acme-hq.credential --peer-listen 127.0.0.1:7901 --admin-listen 127.0.0.1:7902 --allow-listen tcp:8000-8100',
    );
    expect(r.notes.join(' ')).not.toContain('Run it in');
  });

  it('back to the demo relay: start, without the flags only serve takes', () => {
    const r = restartCommand(serve, { relayUrl: '', id: 'acme-hq', peerPort: 7901 }, 7901);
    expect(r.line).toBe(
      'node bin/contact-point.js start --peer-listen 192.168.1.10:7901 --admin-listen 127.0.0.1:7912 --allow-target 192.168.1.0/24:80 --allow-target 10.0.0.5/32:22',
    );
  });
});
