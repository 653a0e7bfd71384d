/**
 * What a registered LAN peer costs the contact point, object by object: a relay and a contact
 * point in worker processes (as the bench starts them), BASE LAN peers attached and registered,
 * a heap snapshot of the contact point, N more peers, a second snapshot; then each kind of
 * object's size and count in the second less the first, divided by N. The objects' own sizes
 * (V8's self_size), as the footprint figures' "snapshot per peer"; RSS adds what the heap does not
 * show (malloc, the young generation's room).
 *
 * With `--offices`, the same for what an office costs the relay: BASE offices' real tunnels (5
 * announced peers each, as the footprint's offices), a snapshot of the relay, N more, another.
 *
 *   node dist/bench/heap-per-peer.js [--peers N | --offices N] [--base B] [--top K] [--keep DIR]
 *
 * Compiled code (JIT) grows between the snapshots with the work done, not with the peers: it is
 * listed, and left out of the total.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { PeerClient } from '../core/peer/peer-client.js';
import { PeerIdentity } from '../core/peer/identity.js';
import { SealKey } from '../core/protocol/seal.js';
import { attachLanPeer, CONCURRENCY, PEERS_EACH } from './footprint.js';
import { WorkerHandle } from './ipc.js';
import { pool, sleep } from './util.js';

const CP_ID = 'heap-hq';

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]] } };
  nodes: number[];
  strings: string[];
}

type Tally = Map<string, { size: number; count: number }>;

/** self size and count per `type:name` (strings by type alone: their name is their text) */
function tally(s: Snapshot): Tally {
  const fields = s.snapshot.meta.node_fields;
  const types = s.snapshot.meta.node_types[0];
  const width = fields.length;
  const ti = fields.indexOf('type');
  const ni = fields.indexOf('name');
  const si = fields.indexOf('self_size');
  const out = new Map<string, { size: number; count: number }>();
  for (let k = 0; k < s.nodes.length; k += width) {
    const type = types[s.nodes[k + ti]!]!;
    const key = type.includes('string') ? type : type === 'code' ? '(compiled code)' : `${type}:${s.strings[s.nodes[k + ni]!]!.slice(0, 60)}`;
    const e = out.get(key) ?? { size: 0, count: 0 };
    e.size += s.nodes[k + si]!;
    e.count++;
    out.set(key, e);
  }
  return out;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { peers: { type: 'string' }, offices: { type: 'string' }, base: { type: 'string', default: '10' }, top: { type: 'string', default: '30' }, keep: { type: 'string' } } });
  if (values.peers !== undefined && values.offices !== undefined) throw new Error('--peers and --offices measure different processes: give one');
  const offices = values.offices !== undefined;
  const n = Number(values.offices ?? values.peers ?? '1000');
  const base = Number(values.base);
  const top = Number(values.top);
  if (![n, base, top].every((v) => Number.isInteger(v) && v > 0)) throw new Error('--peers, --offices, --base and --top take positive whole numbers');
  const dir = values.keep ?? mkdtempSync(join(tmpdir(), 'heap-per-peer-'));
  mkdirSync(dir, { recursive: true });
  const script = new URL('./worker.js', import.meta.url);
  // As the bench starts the product's processes (bench/run.ts): the young generation kept small.
  const flags = ['--expose-gc', '--max-semi-space-size=1'];
  const relay = await WorkerHandle.start(script, 'relay', {}, flags);
  const clients: PeerClient[] = [];
  let cp: WorkerHandle | undefined;
  const officeWorkers: WorkerHandle[] = [];
  const report = (what: string, a: Tally, b: Tally): void => {
    const rows = [...b].map(([key, v]) => {
      const was = a.get(key) ?? { size: 0, count: 0 };
      return { key, bytes: (v.size - was.size) / n, count: (v.count - was.count) / n };
    });
    rows.sort((x, y) => y.bytes - x.bytes);
    const total = rows.reduce((t, r) => t + (r.key === '(compiled code)' ? 0 : r.bytes), 0);
    process.stdout.write(`${what} (${n} after ${base}; objects' own sizes): ${total.toFixed(0)} B, compiled code left out\n`);
    process.stdout.write(`${'bytes'.padStart(8)} ${'count'.padStart(6)}  object\n`);
    for (const r of rows.slice(0, top)) process.stdout.write(`${r.bytes.toFixed(1).padStart(8)} ${r.count.toFixed(2).padStart(6)}  ${r.key}\n`);
    if (values.keep) process.stdout.write(`snapshots kept in ${dir}\n`);
  };
  const snapOf = async (worker: WorkerHandle, name: string): Promise<Tally> => {
    const path = join(dir, name);
    await worker.call('heapSnapshot', { path }, 300_000);
    return tally(JSON.parse(readFileSync(path, 'utf8')) as Snapshot);
  };
  try {
    if (offices) {
      let next = 0;
      const up = async (count: number): Promise<void> => {
        const ids = Array.from({ length: count }, () => `office-${next++}`);
        const secrets = await relay.call<string[]>('addCredentials', { kind: 'contact-point', ids });
        const w = await WorkerHandle.start(script, 'offices', { relayUrl: relay.url, offices: ids.map((id, i) => ({ id, secret: secrets[i]! })), peersEach: PEERS_EACH }, []);
        officeWorkers.push(w);
        await sleep(1_000);
      };
      await up(base);
      const a = await snapOf(relay, 'before.heapsnapshot');
      await up(n);
      const b = await snapOf(relay, 'after.heapsnapshot');
      report(`relay, per office with ${PEERS_EACH} announced peers`, a, b);
      return;
    }
    const secret = await relay.call<string>('addCredential', { kind: 'contact-point', id: CP_ID });
    cp = await WorkerHandle.start(script, 'contact-point', { id: CP_ID, relayUrl: relay.url, secret, subnets: ['127.0.0.0/8'], history: 'off' }, flags);
    const worker = cp;
    let next = 0;
    const attach = async (count: number): Promise<void> => {
      const names = Array.from({ length: count }, () => `peer-${next++}`);
      await pool(names, CONCURRENCY, (name) => attachLanPeer(worker.url, name, PeerIdentity.generate(), SealKey.generate(), clients));
      await sleep(1_000);
    };
    await attach(base);
    const a = await snapOf(worker, 'before.heapsnapshot');
    await attach(n);
    const b = await snapOf(worker, 'after.heapsnapshot');
    report('contact point, per LAN peer', a, b);
  } finally {
    for (const w of officeWorkers) await w.stop();
    await Promise.all(clients.map((c) => c.stop()));
    await cp?.stop();
    await relay.stop();
    if (!values.keep) rmSync(dir, { recursive: true, force: true });
  }
}

// Piped into `head`: stop quietly when the reader has gone.
process.stdout.on('error', (err: NodeJS.ErrnoException) => process.exit(err.code === 'EPIPE' ? 0 : 1));

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`heap-per-peer: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
