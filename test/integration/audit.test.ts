import { once } from 'node:events';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer, get } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { AdminClient } from '../../core/admin/client.js';
import type { AuditEntry } from '../../core/admin/contract.js';
import { AdminServer } from '../../core/admin/server.js';
import { AUDIT_FILE } from '../../core/contact-point/audit-log.js';
import { ContactPoint } from '../../core/contact-point/contact-point.js';
import { STATE_FILE, type PersistedState } from '../../core/contact-point/state-store.js';
import { FAST, logger, startHarness, waitFor, type Harness } from '../helpers.js';

/**
 * The audit trail against a real contact point, relay, peers and admin endpoint on loopback:
 * every kind of decision gets an entry with when, which surface and before/after; the entries
 * are on disk (state file and audit file) when the call returns, and survive a restart.
 */

let h: Harness | undefined;
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  await h?.close();
  h = undefined;
});

async function auditFile(dir: string): Promise<AuditEntry[]> {
  const text = await readFile(join(dir, AUDIT_FILE), 'utf8');
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as AuditEntry);
}

async function adminEndpoint(cp: ContactPoint, surface?: 'api' | 'cli' | 'gui'): Promise<AdminClient> {
  const server = new AdminServer({ api: cp, logger });
  await server.start();
  const client = await AdminClient.connect(server.wsUrl, server.token, surface ? { surface } : {});
  cleanups.push(() => server.stop(), () => client.close());
  return client;
}

function httpGet(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    get({ host: '127.0.0.1', port, agent: false }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve(body));
    }).on('error', reject);
  });
}

describe('audit trail', () => {
  it('records every kind of decision with its surface and before/after, on disk when the call returns', async () => {
    h = await startHarness();
    const { cp, stateDir } = h;
    const api = await adminEndpoint(cp);
    await h.registered('printer'); // approved in-process: surface api
    const scanner = await h.internal('scanner');
    scanner.register();
    await waitFor(() => cp.registrar.get('scanner')?.state === 'pending');

    const t0 = Date.now();
    await api.call('peers:reject', { name: 'scanner' });
    // On disk when the call returns: in the audit file and, with the decision, in the state file.
    const afterReject = await auditFile(stateDir);
    expect(afterReject.at(-1)).toMatchObject({ action: 'peer:reject', target: 'scanner', surface: 'api', before: { state: 'pending' }, after: { state: 'unregistered' } });
    expect(afterReject.at(-1)!.at).toBeGreaterThanOrEqual(t0);
    const state = JSON.parse(await readFile(join(stateDir, STATE_FILE), 'utf8')) as PersistedState;
    expect(state.audit?.seq).toBe(afterReject.at(-1)!.seq);

    await api.call('peers:revoke', { name: 'printer' });
    await api.call('peers:approve', { name: 'printer' });
    await api.call('peers:forget', { name: 'scanner' });
    await api.call('policy:set', { subnets: ['10.9.0.0/16'], joinCode: 'blue-door-42' });
    await api.call('policy:set', { subnets: [], joinCode: '' });
    await api.call('ports:policy', { targets: ['127.0.0.1/32:1-65535'], listen: ['tcp:1-65535'] });

    // A port to close: a real TCP service exposed through the relay.
    const web = createHttpServer((_q, r) => r.end('printer page'));
    web.listen(0, '127.0.0.1');
    await once(web, 'listening');
    cleanups.push(() => new Promise((r) => web.close(r)));
    const e = await h.relay.expose({ cp: 'acme-hq', proto: 'tcp', host: '127.0.0.1', port: (web.address() as AddressInfo).port, operator: 'tech' });
    cleanups.push(async () => h?.relay.unexpose(e.id));
    expect(await httpGet(e.publicPort)).toBe('printer page');
    await waitFor(() => cp.ports.list().length === 1, 5_000, 'the exposure open at the contact point');
    const portId = cp.ports.list()[0]!.id;
    await api.call('ports:close', { id: portId });

    const { entries, more } = await api.call('audit:list', {});
    expect(more).toBe(false);
    const seen = entries.map((x) => [x.action, x.target, x.surface]);
    expect(seen).toEqual([
      ['ports:close', `port ${portId}`, 'api'],
      ['ports:policy', 'ports', 'api'],
      ['policy:set', 'policy', 'api'],
      ['policy:set', 'policy', 'api'],
      ['peer:forget', 'scanner', 'api'],
      ['peer:approve', 'printer', 'api'],
      ['peer:revoke', 'printer', 'api'],
      ['peer:reject', 'scanner', 'api'],
      ['peer:approve', 'printer', 'api'],
    ]);
    // Newest first, numbered in order.
    expect(entries.map((x) => x.seq)).toEqual([9, 8, 7, 6, 5, 4, 3, 2, 1]);
    const byAction = (a: string, i = 0): AuditEntry => entries.filter((x) => x.action === a)[i]!;
    expect(byAction('ports:close')).toMatchObject({ before: { proto: 'tcp', state: 'exposed', operator: 'tech' }, after: null });
    expect(byAction('ports:policy')).toMatchObject({ before: { targets: [], listen: [] }, after: { targets: ['127.0.0.1/32:1-65535'], listen: ['tcp:1-65535'] } });
    // The join code never goes in, only whether one is set.
    expect(byAction('policy:set', 1)).toMatchObject({ before: { subnets: [], joinCode: false }, after: { subnets: ['10.9.0.0/16'], joinCode: true, joinCodeChanged: true } });
    expect(byAction('policy:set', 0)).toMatchObject({ before: { subnets: ['10.9.0.0/16'], joinCode: true }, after: { subnets: [], joinCode: false } });
    expect(JSON.stringify(entries)).not.toContain('blue-door-42');
    expect(byAction('peer:forget')).toMatchObject({ before: { state: 'unregistered' }, after: null });
    expect(byAction('peer:revoke')).toMatchObject({ before: { state: 'registered', admittedBy: 'admin' }, after: { state: 'revoked' } });

    // One peer's entries, and paging.
    expect((await api.call('audit:list', { target: 'printer' })).entries.map((x) => x.action)).toEqual(['peer:approve', 'peer:revoke', 'peer:approve']);
    const page = await api.call('audit:list', { limit: 2, beforeSeq: 5 });
    expect(page).toMatchObject({ more: true, entries: [{ seq: 4 }, { seq: 3 }] });

    // Revoked-by: the record keeps the surface of its last decision.
    await api.call('peers:revoke', { name: 'printer' });
    expect(cp.registrar.view(cp.registrar.get('printer')!)).toMatchObject({ state: 'revoked', decidedVia: 'api' });
  });

  it('the caller says its surface: the CLI client and the GUI client are recorded as such; an unknown surface is refused', async () => {
    h = await startHarness();
    await h.internal('a');
    await h.internal('b');
    await waitFor(() => h!.cp.registrar.size === 2);
    const cli = await adminEndpoint(h.cp, 'cli');
    const gui = await adminEndpoint(h.cp, 'gui');
    const live: AuditEntry[] = [];
    cleanups.push(async () => gui.subscribe('audit:entry', (x) => live.push(x)));
    gui.subscribe('audit:entry', (x) => live.push(x));
    await cli.call('peers:approve', { name: 'a' });
    await gui.call('peers:approve', { name: 'b' });
    expect((await cli.call('audit:list', {})).entries.map((x) => [x.target, x.surface])).toEqual([
      ['b', 'gui'],
      ['a', 'cli'],
    ]);
    await waitFor(() => live.length === 2, 5_000, 'audit:entry events');
    expect(live.map((x) => x.surface)).toEqual(['cli', 'gui']);
    expect(h.cp.registrar.view(h.cp.registrar.get('b')!).decidedVia).toBe('gui');

    const server = new AdminServer({ api: h.cp, logger });
    await server.start();
    cleanups.push(() => server.stop());
    const refused = await AdminClient.connect(server.wsUrl, server.token, { surface: 'root' as 'api' }).then(
      () => 'connected',
      (err: unknown) => (err as Error).message,
    );
    expect(refused).toMatch(/surface must be one of gui, cli, api/);
  });

  it('survives a restart, and an entry the audit file missed (crash after the state write) is appended from the state file', async () => {
    h = await startHarness();
    const { cp, stateDir } = h;
    await h.registered('printer');
    await cp.call('peers:revoke', { name: 'printer' }, 'cli');
    const before = (await cp.call('audit:list', {})).entries;
    expect(before.map((x) => [x.action, x.surface])).toEqual([
      ['peer:revoke', 'cli'],
      ['peer:approve', 'api'],
    ]);
    await cp.stop();

    // As if the process died after the state file was written but before the append: drop the last line.
    const lines = (await readFile(join(stateDir, AUDIT_FILE), 'utf8')).split('\n').filter((l) => l !== '');
    await writeFile(join(stateDir, AUDIT_FILE), lines[0] + '\n');
    const state = JSON.parse(await readFile(join(stateDir, STATE_FILE), 'utf8')) as PersistedState;
    await writeFile(join(stateDir, STATE_FILE), JSON.stringify({ ...state, audit: { seq: 2, tail: [before[0]] } }));

    const again = await ContactPoint.create({ id: 'acme-hq', relayUrl: h.relay.url, secret: h.cpSecret, stateDir, peerHost: '127.0.0.1', logger, timing: FAST });
    try {
      expect((await again.call('audit:list', {})).entries).toEqual(before);
      expect((await auditFile(stateDir)).map((x) => x.seq)).toEqual([1, 2]);
      // Numbering goes on after a restart.
      await again.call('peers:approve', { name: 'printer' }, 'gui');
      expect((await again.call('audit:list', { limit: 1 })).entries[0]).toMatchObject({ seq: 3, surface: 'gui', action: 'peer:approve', before: { state: 'revoked' }, after: { state: 'registered' } });
    } finally {
      await again.stop();
    }
  });

  it('a decision that cannot be saved leaves no audit entry', async () => {
    h = await startHarness();
    const { cp, stateDir } = h;
    await h.internal('a');
    await waitFor(() => cp.registrar.size === 1);
    await cp.call('peers:approve', { name: 'a' });
    // The state file's path becomes a folder: the rename fails, for root too.
    const path = join(stateDir, STATE_FILE);
    await rename(path, `${path}.aside`);
    await mkdir(path);
    const err = await cp.call('peers:revoke', { name: 'a' }).catch((e: unknown) => e as Error);
    expect((err as { code?: string }).code).toBe('NOT_SAVED');
    await rm(path, { recursive: true });
    await rename(`${path}.aside`, path);
    expect((await cp.call('audit:list', {})).entries.map((x) => x.action)).toEqual(['peer:approve']);
    await cp.call('peers:revoke', { name: 'a' });
    expect((await cp.call('audit:list', {})).entries.map((x) => [x.seq, x.action])).toEqual([
      [2, 'peer:revoke'],
      [1, 'peer:approve'],
    ]);
  });
});
