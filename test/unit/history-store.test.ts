import { appendFile, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { HistoryEntry, HistoryOutcome } from '../../core/admin/contract.js';
import { HistoryStore, segmentEntries, type HistoryObservation } from '../../core/contact-point/history-store.js';
import { createLogger, silentLogger } from '../../core/runtime/logger.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cp-unit-history-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const T0 = 1_764_000_000_000;
const PEERS = ['printer@acme-hq', 'laserprinter@acme-hq', 'scanner@acme-hq'];
const SENDERS = ['alice@ext', 'bob@ext', 'carol@branch'];

/** A varied, deterministic observation: outcome, peer, sender and reason cycle with different periods. */
function observation(n: number): HistoryObservation {
  const outcome: HistoryOutcome = n % 5 === 0 ? 'refused' : n % 7 === 0 ? 'forwarded' : 'delivered';
  return {
    at: T0 + n * 1_000,
    id: `m${n}`,
    dir: n % 3 === 0 ? 'local' : 'in',
    from: SENDERS[n % 3]!,
    to: PEERS[Math.floor(n / 4) % 3]!,
    size: n % 1000,
    outcome,
    code: outcome === 'refused' ? (n % 10 === 0 ? 13 : 12) : 0,
    reason: outcome === 'refused' ? (n % 10 === 0 ? 'the peer is not connected' : 'peer is revoked') : '',
  };
}

async function filled(n: number, entries = 100_000, logger = silentLogger): Promise<HistoryStore> {
  const h = await HistoryStore.open(dir, { entries, days: 0 }, logger);
  for (let i = 1; i <= n; i++) h.append(observation(i));
  await h.flush();
  return h;
}

/** Pages through everything with `filter`, newest first. */
async function all(h: HistoryStore, filter: Parameters<HistoryStore['query']>[0] = {}, limit = 37): Promise<HistoryEntry[]> {
  const out: HistoryEntry[] = [];
  let before: number | undefined;
  for (;;) {
    const page = await h.query({ ...filter, limit, ...(before !== undefined ? { before } : {}) });
    out.push(...page.entries);
    if (page.next === undefined) return out;
    before = page.next;
  }
}

function warnings(): { logger: ReturnType<typeof createLogger>; lines: string[] } {
  const lines: string[] = [];
  return { logger: createLogger({ level: 'warn', write: (l) => lines.push(l) }), lines };
}

describe('history store', () => {
  it('pages newest first with a cursor, each entry once, seq in order', async () => {
    const h = await filled(500);
    const got = await all(h);
    expect(got.map((e) => e.seq)).toEqual(Array.from({ length: 500 }, (_, i) => 500 - i));
    expect(got[0]).toEqual({ ...observation(500), seq: 500 });
    await h.close();
  });

  it('filters by peer (whole address or part), sender, outcome, reason and time, and counts the matches', async () => {
    const h = await filled(2_000);
    const source = Array.from({ length: 2_000 }, (_, i) => ({ ...observation(i + 1), seq: i + 1 })).reverse();
    const cases: [Parameters<HistoryStore['query']>[0], (e: HistoryEntry) => boolean][] = [
      [{ peer: 'printer@acme-hq' }, (e) => e.to === 'printer@acme-hq' || e.from === 'printer@acme-hq'],
      [{ peer: 'PRINTER' }, (e) => e.to.includes('printer')],
      [{ sender: 'bob@ext' }, (e) => e.from === 'bob@ext'],
      [{ outcome: 'refused' }, (e) => e.outcome === 'refused'],
      [{ reason: 'PEER_OFFLINE' }, (e) => e.code === 13],
      [{ reason: 'revoked' }, (e) => e.reason.includes('revoked')],
      [{ since: T0 + 100_000, until: T0 + 200_000 }, (e) => e.at >= T0 + 100_000 && e.at <= T0 + 200_000],
      [{ peer: 'scanner@acme-hq', outcome: 'refused', sender: 'carol@branch' }, (e) => e.to === 'scanner@acme-hq' && e.outcome === 'refused' && e.from === 'carol@branch'],
    ];
    for (const [filter, pred] of cases) {
      const want = source.filter(pred);
      expect(want.length, JSON.stringify(filter)).toBeGreaterThan(0);
      expect(await all(h, filter), JSON.stringify(filter)).toEqual(want);
      const page = await h.query({ ...filter, limit: 5 });
      expect(page.matched).toBe(want.length);
      expect(page.counts.refused).toBe(want.filter((e) => e.outcome === 'refused').length);
    }
    expect((await h.query({ peer: 'nobody@nowhere' })).entries).toEqual([]);
    await h.close();
  });

  it("counts a peer's messages per time bucket (the peer page's chart)", async () => {
    const h = await filled(2_000);
    const since = T0 + 100_000;
    const t = await h.traffic({ peer: 'printer@acme-hq', since, until: since + 600_000, buckets: 10 });
    expect(t.bucketMs).toBe(60_000);
    const want = { delivered: new Array<number>(10).fill(0), refused: new Array<number>(10).fill(0), forwarded: new Array<number>(10).fill(0) };
    for (let n = 1; n <= 2_000; n++) {
      const o = observation(n);
      if (o.to !== 'printer@acme-hq' || o.at < since || o.at > since + 600_000) continue;
      const b = Math.min(9, Math.floor((o.at - since) / 60_000));
      if (o.outcome !== 'opened' && o.outcome !== 'closed') want[o.outcome][b]!++;
    }
    expect({ delivered: t.delivered, refused: t.refused, forwarded: t.forwarded }).toEqual(want);
    expect(t.delivered.reduce((a, b) => a + b, 0)).toBeGreaterThan(0);
    await h.close();
  });

  it('keeps what it wrote across a reopen, and numbers on from there', async () => {
    const h = await filled(300);
    await h.close();
    const again = await HistoryStore.open(dir, { entries: 100_000, days: 0 }, silentLogger);
    expect((await all(again)).length).toBe(300);
    again.append(observation(301));
    const page = await again.query({ limit: 2 });
    expect(page.entries.map((e) => e.seq)).toEqual([301, 300]);
    await again.close();
    // the newest segment took the new entry: a restart does not add a file
    expect((await readdir(dir)).length).toBe(1);
  });

  it('rotation bounds the files: at least the newest N entries kept, about N + a segment on disk', async () => {
    const keep = 5_000;
    const per = segmentEntries({ entries: keep, days: 0 });
    const h = await filled(23_456, keep);
    const files = await readdir(dir);
    const entries = (await all(h, {}, 1_000)).length;
    expect(entries).toBeGreaterThanOrEqual(keep);
    expect(entries).toBeLessThanOrEqual(keep + per);
    expect(files.length).toBeLessThanOrEqual(Math.ceil(keep / per) + 1);
    let bytes = 0;
    for (const f of files) bytes += (await stat(join(dir, f))).size;
    expect(bytes).toBe(h.stats().bytes);
    expect(bytes / entries).toBeLessThan(200); // a compact line: ~130 bytes with these addresses
    // the oldest kept is the newest entry minus what is kept, never an older one in between
    const seqs = (await all(h, {}, 1_000)).map((e) => e.seq);
    expect(seqs[0]).toBe(23_456);
    expect(seqs.at(-1)).toBe(23_456 - entries + 1);
    await h.close();
  });

  it('the age limit drops segments older than N days', async () => {
    let now = T0;
    const h = await HistoryStore.open(dir, { entries: 1_000, days: 2 }, silentLogger, () => now);
    for (let i = 1; i <= 2_500; i++) h.append({ ...observation(i), at: T0 + i * 1_000 });
    await h.flush();
    expect(h.stats().entries).toBeGreaterThanOrEqual(1_000);
    now = T0 + 3 * 86_400_000;
    await h.setRetention({ entries: 1_000, days: 2 });
    expect(h.stats().entries).toBe(0);
    expect(await readdir(dir)).toEqual([]);
    await h.close();
  });

  it('a torn last line is skipped with a warning, and nothing else is lost', async () => {
    const h = await filled(1_200, 10_000);
    await h.close();
    const file = (await readdir(dir)).sort().at(-1);
    await appendFile(join(dir, file!), '[1201,1764000001201,"deliv');
    const w = warnings();
    const again = await HistoryStore.open(dir, { entries: 10_000, days: 0 }, w.logger);
    expect(w.lines.join('\n')).toMatch(/torn last line/);
    expect((await all(again)).length).toBe(1_200);
    again.append(observation(1_201));
    await again.flush();
    await again.close();
    // the next line started clean: the file reads back whole, no warning this time
    const w2 = warnings();
    const third = await HistoryStore.open(dir, { entries: 10_000, days: 0 }, w2.logger);
    expect(w2.lines).toEqual([]);
    expect((await third.query({ limit: 1 })).entries[0]).toEqual({ ...observation(1_201), seq: 1_201 });
    expect((await all(third)).length).toBe(1_201);
    await third.close();
  });

  it('a corrupt line in the middle is skipped with a warning; the lines after it stay', async () => {
    const h = await filled(100);
    await h.close();
    const [file] = await readdir(dir);
    const path = join(dir, file!);
    const lines = (await readFile(path, 'utf8')).split('\n');
    lines[50] = '{not json';
    await writeFile(path, lines.join('\n'));
    const w = warnings();
    const again = await HistoryStore.open(dir, { entries: 100_000, days: 0 }, w.logger);
    expect(w.lines.join('\n')).toMatch(/corrupt lines.*lines=1/);
    const got = await all(again);
    expect(got.length).toBe(99);
    expect(got.find((e) => e.seq === 50)).toBeUndefined();
    expect(got[0]!.seq).toBe(100);
    await again.close();
  });

  it('a file that is not a segment of this version is left alone', async () => {
    await writeFile(join(dir, '000000000001.jsonl'), '{"contactPointHistory":2}\n[1]\n');
    const w = warnings();
    const h = await HistoryStore.open(dir, { entries: 100_000, days: 0 }, w.logger);
    expect(w.lines.join('\n')).toMatch(/not a history segment of this version/);
    h.append(observation(1));
    await h.flush();
    expect((await h.query({})).entries.length).toBe(1);
    await h.close();
    expect(await readFile(join(dir, '000000000001.jsonl'), 'utf8')).toBe('{"contactPointHistory":2}\n[1]\n');
  });
});
