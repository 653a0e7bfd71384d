import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { HistoryEntry, HistoryPage } from '../../core/admin/contract.js';
import { HISTORY_CSV_COLUMNS } from '../../core/admin/history-export.js';
import { HISTORY_FLUSH_MS } from '../../core/contact-point/history-store.js';
import { parseCsv } from '../csv.js';
import { cliSuite } from './cli-process.js';

/**
 * The history survives the contact point: real relay, serve, peers and messages (delivered and
 * refused) through the CLI; serve is stopped (SIGTERM) and killed (SIGKILL), started again on
 * the same state folder, and `contact-point history` still lists every message, filters them
 * and exports them as CSV and JSON lines.
 */

const suite = cliSuite();
const { cli, start } = suite;

describe('contact-point history: kept across restarts of serve', () => {
  it('lists, filters and exports every message after a clean stop and after kill -9', { timeout: 90_000 }, async () => {
    const relayState = join(suite.home, 'relay');
    const cpState = join(suite.home, 'cp');
    const cpCred = join(suite.home, 'acme-hq.credential');
    const aliceCred = join(suite.home, 'alice.credential');
    expect((await cli(['relay', 'credential', 'add', '--kind', 'contact-point', '--id', 'acme-hq', '--out', cpCred, '--state', relayState])).code).toBe(0);
    expect((await cli(['relay', 'credential', 'add', '--kind', 'external', '--id', 'alice', '--out', aliceCred, '--state', relayState])).code).toBe(0);
    const relay = await start(['relay', '--listen', '127.0.0.1:0', '--state', relayState, '--json']);
    const relayUrl = String(relay.ready.url);
    const serveArgs = [
      'serve', '--relay', relayUrl, '--id', 'acme-hq', '--credential-file', cpCred,
      '--peer-listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--state', cpState, '--json', '--log-level', 'warn',
    ];
    let serve = await start(serveArgs);
    const join_ = (): ReturnType<typeof start> =>
      start(['peer', 'join', '--cp', String(serve.ready.peerPortUrl), '--name', 'printer', '--register', '--json', '--state', join(suite.home, 'peer')]);
    let printer = await join_();
    await printer.waitForEvent((e) => e.event === 'state' && e.state === 'pending', 'pending state');
    expect((await cli(['peers', 'approve', 'printer', '--state', cpState])).code).toBe(0);
    await printer.waitForEvent((e) => e.event === 'state' && e.state === 'registered', 'registered state');

    const asAlice = ['peer', 'send', '--relay', relayUrl, '--id', 'alice', '--credential-file', aliceCred];
    const send = async (to: string, text: string, code: number): Promise<void> => {
      const r = await cli([...asAlice, '--to', to, text]);
      expect(r.code, r.stderr).toBe(code);
    };
    await send('printer@acme-hq', 'one', 0);
    await send('scanner@acme-hq', 'anyone?', 3);
    await send('printer@acme-hq', 'two', 0);

    const history = async (...args: string[]): Promise<HistoryPage> => {
      const r = await cli(['history', '--json', '--state', cpState, ...args]);
      expect(r.code, r.stderr).toBe(0);
      return JSON.parse(r.stdout) as HistoryPage;
    };
    // The live totals and the history agree.
    const status = JSON.parse((await cli(['status', '--json', '--state', cpState])).stdout) as { flow: { messages: number; refused: number } };
    const before = await history();
    expect(status.flow).toMatchObject({ messages: 3, refused: 1 });
    expect(before.matched).toBe(3);
    expect(before.counts).toMatchObject({ delivered: 2, refused: 1 });
    const summary = (p: HistoryPage): unknown[] => p.entries.map((e) => [e.from, e.to, e.outcome, e.code]);
    expect(summary(before)).toEqual([
      ['alice@relay', 'printer@acme-hq', 'delivered', 0],
      ['alice@relay', 'scanner@acme-hq', 'refused', 12],
      ['alice@relay', 'printer@acme-hq', 'delivered', 0],
    ]);
    expect(before.entries[1]!.reason).toBe('no such peer');
    expect(before.entries.every((e) => e.size > 0 && e.id.length > 0 && !JSON.stringify(e).includes('anyone?'))).toBe(true); // metadata, never the payload

    // A clean stop, then a crash: after each, the same entries.
    expect(await serve.stop('SIGTERM')).toBe(0);
    serve = await start(serveArgs);
    expect((await history()).entries).toEqual(before.entries);
    // The restarted serve has a new peer port (port 0): the printer joins it again, with its key.
    await printer.stop('SIGTERM');
    printer = await join_();
    await printer.waitForEvent((e) => e.event === 'state' && e.state === 'registered', 'registered again');
    await send('printer@acme-hq', 'three', 0);
    await new Promise((r) => setTimeout(r, HISTORY_FLUSH_MS * 3)); // one batch interval (and margin) for the write
    expect(await serve.stop('SIGKILL')).toBeNull();
    serve = await start(serveArgs);
    const after = await history();
    expect(after.matched).toBe(4);
    expect(after.entries.slice(1)).toEqual(before.entries);
    expect(after.entries[0]).toMatchObject({ to: 'printer@acme-hq', outcome: 'delivered', seq: before.entries[0]!.seq + 1 });
    expect(await readdir(join(cpState, 'history'))).toHaveLength(1); // restarts append to the same segment

    // Filters and paging.
    expect(summary(await history('--outcome', 'refused'))).toEqual([['alice@relay', 'scanner@acme-hq', 'refused', 12]]);
    expect((await history('--reason', 'PEER_NOT_REGISTERED')).matched).toBe(1);
    expect((await history('--peer', 'printer@acme-hq')).matched).toBe(3);
    expect((await history('--sender', 'bob@relay')).matched).toBe(0);
    const page1 = await history('--limit', '2');
    expect(page1.entries.map((e) => e.seq)).toEqual(after.entries.slice(0, 2).map((e) => e.seq));
    const page2 = await history('--limit', '2', '--before', String(page1.next));
    expect(page2.entries.map((e) => e.seq)).toEqual(after.entries.slice(2).map((e) => e.seq));
    expect(page2.next).toBeUndefined();
    const text = await cli(['history', '--state', cpState, '--outcome', 'refused']);
    expect(text.stdout).toMatch(/refused\s+in\s+alice@relay\s+scanner@acme-hq/);
    expect(text.stdout).toMatch(/1 shown of 1 matching \(0 delivered, 1 refused/);

    // Export: CSV (header + one row each) and JSON lines, to stdout and to a file.
    const csv = await cli(['history', '--state', cpState, '--export', 'csv']);
    expect(csv.code, csv.stderr).toBe(0);
    const rows = parseCsv(csv.stdout);
    expect(rows[0]).toEqual([...HISTORY_CSV_COLUMNS]);
    expect(rows.slice(1).map((r) => [r[0], r[3], r[6], r[9]])).toEqual(after.entries.map((e) => [String(e.seq), e.outcome, e.to, e.code === 0 ? 'OK' : 'PEER_NOT_REGISTERED']));
    const file = join(suite.home, 'refused.jsonl');
    const jsonl = await cli(['history', '--state', cpState, '--export', 'jsonl', '--outcome', 'refused', '--output', file]);
    expect(jsonl.code, jsonl.stderr).toBe(0);
    expect(jsonl.stderr).toContain(`wrote 1 entries to ${file}`);
    const lines = (await readFile(file, 'utf8')).trimEnd().split('\n').map((l) => JSON.parse(l) as HistoryEntry & { status: string; time: string });
    expect(lines).toEqual([{ ...after.entries.find((e) => e.outcome === 'refused'), status: 'PEER_NOT_REGISTERED', time: expect.stringMatching(/^\d{4}-\d\d-\d\dT/) as string }]);

    // Retention: shown, set (saved in the state folder), and bad values refused.
    const shown = await cli(['history', 'retention', '--state', cpState]);
    expect(shown.stdout).toMatch(/keeps at least the newest 100000 entries; no age limit\nstored: 4 entries/);
    expect((await cli(['history', 'retention', '--days', '30', '--state', cpState])).code).toBe(0);
    expect(JSON.parse(await readFile(join(cpState, 'contact-point.json'), 'utf8'))).toMatchObject({ history: { entries: 100_000, days: 30 } });
    const bad = await cli(['history', 'retention', '--entries', '0', '--state', cpState]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--entries "0": expected a whole number from 1 to 1000000');
    const badOutcome = await cli(['history', '--outcome', 'lost', '--state', cpState]);
    expect(badOutcome.code).toBe(2);
    expect(badOutcome.stderr).toContain('--outcome "lost": expected one of delivered, refused, forwarded, opened, closed');
    expect(await serve.stop('SIGTERM')).toBe(0);
  });
});
