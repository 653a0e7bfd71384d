/**
 * `--only cluster-failover` (issue 12): how long an office is unreachable when the relay node
 * carrying its traffic is killed (SIGKILL), from the kill to the first message sent after it
 * that is delivered (its end-to-end ACK back at the sender), median of 5 rounds, with two tunnels
 * (`serve --relay r2 --relay r3 --relay r1`) and, as the baseline in the same run, with one
 * tunnel through an L4 load balancer in front of r2 and r3 (it re-homes by re-dialling).
 */
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import type { PeerClient } from '../core/peer/peer-client.js';
import type { TunnelView } from '../core/admin/contract.js';
import type { BenchContext } from './context.js';
import type { WorkerHandle } from './ipc.js';
import { relaySender } from './messages.js';
import { CLUSTER_NATS_GOMAXPROCS, haveNatsServer, natsProcsNote, NO_NATS_REASON, startNatsServer, type NatsServer } from './nats-server.js';
import { emit, median, note, round, sleep, waitFor } from './util.js';

const CP_ID = 'failover-hq';
const RECEIVER = 'sink-worker';
const TO = `${RECEIVER}@${CP_ID}`;
/** A message every this many ms from the sender on r1, before and after the kill. */
const SEND_EVERY_MS = 10;
/** Steady traffic before the kill. */
const WARM_MS = 1_000;
/** A round gives up on a failover that takes longer than this. */
const ROUND_LIMIT_MS = 30_000;
/** Issue 12's target for two tunnels. */
const TARGET_MS = 2_000;

type Mode = 'two tunnels' | 'one tunnel';

export async function runClusterFailover(ctx: BenchContext): Promise<void> {
  if (!ctx.selected('cluster-failover')) return;
  if (!haveNatsServer) {
    note(NO_NATS_REASON);
    return;
  }
  const rounds = ctx.quick ? 3 : 5;
  const workers: WorkerHandle[] = [];
  const clients: PeerClient[] = [];
  let nats: NatsServer | undefined;
  try {
    nats = await startNatsServer({ gomaxprocs: CLUSTER_NATS_GOMAXPROCS });
    const servers = [nats.url];
    note(`cluster-failover: nats-server on ${nats.url}; relay nodes r1 (the sender's) and r3 stay, r2 is started and killed each round`);
    const r1 = await ctx.startWorker('relay', { cluster: { servers, node: 'r1' } });
    workers.push(r1);
    const r3 = await ctx.startWorker('relay', { cluster: { servers, node: 'r3' } });
    workers.push(r3);
    const secret = await r1.call<string>('addCredential', { kind: 'contact-point', id: CP_ID });
    const results: Record<Mode, Round[]> = { 'two tunnels': [], 'one tunnel': [] };
    for (let r = 0; r < rounds; r++) {
      for (const mode of ['two tunnels', 'one tunnel'] as const) {
        const res = await failoverRound(ctx, { servers, r1, r3, secret, mode, clients, sender: `bench-fo-${r}-${mode === 'one tunnel' ? 1 : 2}` });
        results[mode].push(res);
        note(`  round ${r + 1}, ${mode}: ${res.failoverMs === undefined ? 'no delivery' : `${res.failoverMs} ms`} from the kill to the next delivered message; ${res.failed} sends failed of ${res.sent}`);
      }
    }
    const value = (mode: Mode): number | undefined => {
      const ms = results[mode].map((x) => x.failoverMs).filter((x) => x !== undefined);
      return ms.length === results[mode].length ? median(ms) : undefined;
    };
    const two = value('two tunnels');
    const one = value('one tunnel');
    emit({
      name: 'cluster.failover',
      description: 'kill -9 of the relay node carrying an office\'s traffic: ms from the kill to the first message sent after it that is delivered (its end-to-end ACK at the sender), sender on another node sending every 10 ms; two tunnels (the other carries on) vs one tunnel through an L4 load balancer (it re-dials)',
      value: two === undefined ? null : round(two, 1),
      unit: 'ms',
      rounds: results['two tunnels'].map((x) => x.failoverMs ?? null),
      baseline_ms: one === undefined ? null : round(one, 1),
      baseline_rounds: results['one tunnel'].map((x) => x.failoverMs ?? null),
      baseline: 'the same office with one tunnel, relay URL an L4 load balancer in front of r2 and r3 that skips a backend refusing connections',
      ratio: two !== undefined && one !== undefined && one > 0 ? round(two / one) : null,
      target_ms: TARGET_MS,
      target_met: two !== undefined && two <= TARGET_MS,
      failed_sends: results['two tunnels'].reduce((n, x) => n + x.failed, 0),
      baseline_failed_sends: results['one tunnel'].reduce((n, x) => n + x.failed, 0),
      send_every_ms: SEND_EVERY_MS,
      topology: `processes: ${natsProcsNote(CLUSTER_NATS_GOMAXPROCS)}, relay nodes r1, r2, r3, contact point (tunnels on r2 and r3, or one on r2), internal SDK receiver; SDK sender on r1 in the bench process; all on 127.0.0.1`,
      mode: ctx.quick ? 'quick' : 'full',
      node: process.version,
    });
  } finally {
    await Promise.all(clients.map((c) => c.stop()));
    for (const w of workers.reverse()) await w.stop().catch(() => undefined);
    await nats?.stop();
  }
}

interface Round {
  /** kill to the first delivery of a message sent after it; undefined: none within ROUND_LIMIT_MS */
  readonly failoverMs: number | undefined;
  readonly sent: number;
  /** sends that did not end acked (the SDK's deadline passed): lost */
  readonly failed: number;
}

/** One kill: a fresh r2, contact point and receiver; r2 is killed under a paced flow from r1. */
async function failoverRound(
  ctx: BenchContext,
  o: { servers: string[]; r1: WorkerHandle; r3: WorkerHandle; secret: string; mode: Mode; clients: PeerClient[]; sender: string },
): Promise<Round> {
  const mine: WorkerHandle[] = [];
  let lb: { url: string; close(): Promise<void> } | undefined;
  try {
    const r2 = await ctx.startWorker('relay', { cluster: { servers: o.servers, node: 'r2' } });
    mine.push(r2);
    const port = (w: WorkerHandle): number => Number(new URL(w.url).port);
    lb = o.mode === 'one tunnel' ? await loadBalancer([port(r2), port(o.r3)]) : undefined;
    const cp = await ctx.startWorker('contact-point', {
      id: CP_ID,
      relayUrl: lb ? lb.url : r2.url,
      ...(lb ? {} : { relayUrls: [o.r3.url, o.r1.url] }),
      secret: o.secret,
      subnets: ['127.0.0.0/8'],
    });
    mine.unshift(cp);
    // Tunnels where the round wants them: on r2 and r3, or the one on r2.
    await waitFor(
      async () => {
        const t = await cp.call<TunnelView>('tunnel');
        return lb ? t.state === 'connected' && t.node === 'r2' : t.tunnels?.map((s) => s.node).join() === 'r2,r3';
      },
      10_000,
      `${o.mode} up`,
    );
    const sink = await ctx.startWorker('receiver', { url: cp.url, name: RECEIVER });
    mine.unshift(sink);
    await waitFor(async () => (await o.r1.call<string>('tunnelPlace', { id: CP_ID })) === 'remote', 10_000, 'r1 to see the office');
    const sender = await relaySender(o.r1, o.clients, TO, o.sender);

    const sends: Promise<void>[] = [];
    let killAt = 0;
    let firstAfter: number | undefined;
    let failed = 0;
    const started = Date.now();
    while (killAt === 0 || (firstAfter === undefined && Date.now() - killAt < ROUND_LIMIT_MS)) {
      if (killAt === 0 && Date.now() - started >= WARM_MS) {
        killAt = Date.now();
        r2.child.kill('SIGKILL');
      }
      const afterKill = killAt !== 0;
      sends.push(
        sender.send(TO, 'x'.repeat(64), { deadlineMs: ROUND_LIMIT_MS }).then(
          () => {
            if (afterKill && firstAfter === undefined) firstAfter = Date.now();
          },
          () => void failed++,
        ),
      );
      await sleep(SEND_EVERY_MS);
    }
    await Promise.all(sends);
    return { failoverMs: firstAfter === undefined ? undefined : firstAfter - killAt, sent: sends.length, failed };
  } finally {
    for (const w of mine) await w.stop().catch(() => undefined);
    await lb?.close();
  }
}

/**
 * An L4 (TCP passthrough) load balancer on loopback: each connection goes to the first backend
 * that accepts it, in order, as a balancer with passive health checks does after a refusal.
 */
async function loadBalancer(backends: readonly number[]): Promise<{ url: string; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.pause();
    const tryBackend = (i: number): void => {
      if (i >= backends.length) return void client.destroy();
      const up = createConnection({ host: '127.0.0.1', port: backends[i]! });
      up.once('error', () => tryBackend(i + 1));
      up.once('connect', () => {
        up.removeAllListeners('error');
        sockets.add(up);
        up.on('close', () => sockets.delete(up));
        const end = (): void => {
          client.destroy();
          up.destroy();
        };
        for (const s of [up, client]) {
          s.on('error', end);
          s.on('close', end);
        }
        client.pipe(up).pipe(client);
        client.resume();
      });
    };
    tryBackend(0);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  return {
    url: `ws://127.0.0.1:${port}/v1`,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}
