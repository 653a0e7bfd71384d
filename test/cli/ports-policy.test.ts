import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { PortPolicyView } from '../../core/admin/contract.js';
import { cliSuite } from './cli-process.js';

/**
 * `contact-point ports policy set` against a real serve: --add and --remove change one list
 * by a rule, a plain --target/--listen replaces the list and says on stderr what it dropped.
 */

const suite = cliSuite();
const { cli, start } = suite;

describe('contact-point ports policy set', () => {
  it('--add adds, --remove removes, a plain set replaces and names what it dropped', async () => {
    const relayState = join(suite.home, 'relay');
    const cpState = join(suite.home, 'cp');
    const cpCred = join(suite.home, 'acme-hq.credential');
    const add = await cli(['relay', 'credential', 'add', '--kind', 'contact-point', '--id', 'acme-hq', '--out', cpCred, '--state', relayState]);
    expect(add.code, add.stderr).toBe(0);
    const relay = await start(['relay', '--listen', '127.0.0.1:0', '--state', relayState, '--json']);
    await start([
      'serve', '--relay', String(relay.ready.url), '--id', 'acme-hq', '--credential-file', cpCred,
      '--peer-listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--state', cpState, '--json', '--log-level', 'warn',
    ]);
    const policy = async (...args: string[]): Promise<{ code: number | null; stderr: string; view: PortPolicyView | undefined }> => {
      const r = await cli(['ports', 'policy', 'set', ...args, '--json', '--state', cpState]);
      return { code: r.code, stderr: r.stderr, view: r.code === 0 ? (JSON.parse(r.stdout) as PortPolicyView) : undefined };
    };
    const show = async (): Promise<PortPolicyView> => JSON.parse((await cli(['ports', 'policy', '--json', '--state', cpState])).stdout) as PortPolicyView;

    expect((await policy('--target', '192.168.1.20/32:80', '--listen', 'tcp:8000-8100')).view).toEqual({ targets: ['192.168.1.20/32:80'], listen: ['tcp:8000-8100'] });
    const added = await policy('--add', '--target', '192.168.1.30/32:631', '--target', '10.0.0.0/24:22');
    expect(added.code, added.stderr).toBe(0);
    expect(added.view).toEqual({ targets: ['192.168.1.20/32:80', '192.168.1.30/32:631', '10.0.0.0/24:22'], listen: ['tcp:8000-8100'] });
    expect(added.stderr).not.toContain('dropped');
    const again = await policy('--add', '--target', '192.168.1.30/32:631');
    expect(again.stderr).toContain('--target 192.168.1.30/32:631: already in the list');
    expect(again.view?.targets).toHaveLength(3);

    const removed = await policy('--remove', '--target', '192.168.1.20/32:80');
    expect(removed.code, removed.stderr).toBe(0);
    expect(removed.view).toEqual({ targets: ['192.168.1.30/32:631', '10.0.0.0/24:22'], listen: ['tcp:8000-8100'] });

    // Removing what is not there fails and changes nothing.
    const missing = await policy('--remove', '--target', '172.16.0.1/32:80');
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('--target 172.16.0.1/32:80: not in the list (192.168.1.30/32:631 10.0.0.0/24:22); nothing changed');
    expect(await show()).toEqual({ targets: ['192.168.1.30/32:631', '10.0.0.0/24:22'], listen: ['tcp:8000-8100'] });

    // A plain set replaces the list, and says which rules it dropped.
    const replaced = await policy('--target', '192.168.1.40/32:443');
    expect(replaced.view).toEqual({ targets: ['192.168.1.40/32:443'], listen: ['tcp:8000-8100'] });
    expect(replaced.stderr).toContain('dropped target rules: 192.168.1.30/32:631 10.0.0.0/24:22 (--add adds to the list instead)');

    for (const bad of [['--add', '--remove', '--target', '1.2.3.4'], ['--add', '--clear', '--target', '1.2.3.4'], ['--add']]) {
      const r = await policy(...bad);
      expect(r.code, bad.join(' ')).toBe(2);
    }
    expect(await show()).toEqual({ targets: ['192.168.1.40/32:443'], listen: ['tcp:8000-8100'] });
  });
});
