import { describe, expect, it } from 'vitest';
import type { RelayStatusView } from '../../core/admin/relay-contract.js';
import { Status } from '../../core/protocol/status.js';
import { cliSuite, operatorSetup } from './cli-process.js';

/**
 * Issue 15 item 4 through the real CLI: `serve --no-mediation` leaves `mediation` out of its
 * hello, `relay status` shows the office's environment as announced, and `expose` to it is
 * refused at once with NOT_OFFERED (39) and what to do.
 */

const suite = cliSuite();
const { cli } = suite;

describe('capabilities as announced', () => {
  it('serve --no-mediation: relay status lists the office without mediation, and expose is refused NOT_OFFERED', async () => {
    const s = await operatorSetup(suite, { targets: [9], serveFlags: ['--no-mediation'], relayFlags: ['--admin-listen', '127.0.0.1:0'] });
    const r = await cli(['relay', 'status', '--json', '--state', s.relayState]);
    expect(r.code, r.stderr).toBe(0);
    const office = (JSON.parse(r.stdout) as RelayStatusView).offices.find((o) => o.id === 'acme-hq')!;
    expect(office.env.software).toMatch(/^contact-point\//);
    expect(office.env.capabilities).toEqual(expect.arrayContaining(['messages', 'reachable', 'udp-aead']));
    expect(office.env.capabilities).not.toContain('mediation');

    const started = Date.now();
    const refused = await cli(['expose', 'acme-hq', '127.0.0.1:9', ...s.asTech]);
    expect(refused.code, refused.stderr).toBe(3);
    expect(refused.stderr).toContain('NOT_OFFERED');
    expect(refused.stderr).toContain('the office does not offer port mediation');
    expect(refused.stderr).toContain('--no-mediation');
    expect(Date.now() - started).toBeLessThan(10_000);

    const text = await cli(['relay', 'status', '--state', s.relayState]);
    expect(text.code, text.stderr).toBe(0);
    const row = text.stdout.split('\n').find((l) => l.startsWith('acme-hq '))!;
    expect(row).toMatch(/ messages,reachable,\S*udp-aead\S* \(no port mediation\)$/);
    expect(row.replace('(no port mediation)', '')).not.toContain('mediation');
    expect(text.stdout).toMatch(new RegExp(`port +NOT_OFFERED \\(${Status.NOT_OFFERED}\\) +operator tech`));
  });

  it('serve without the flag announces mediation', async () => {
    const s = await operatorSetup(suite, { targets: [9], relayFlags: ['--admin-listen', '127.0.0.1:0'] });
    const r = await cli(['relay', 'status', '--json', '--state', s.relayState]);
    expect(r.code, r.stderr).toBe(0);
    expect((JSON.parse(r.stdout) as RelayStatusView).offices[0]!.env.capabilities).toEqual(expect.arrayContaining(['mediation', 'udp-aead']));
  });
});
