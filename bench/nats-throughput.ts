/**
 * The NATS anchor of the throughput benchmark (issue 17 target 1): the same 1 KiB messages
 * through a NATS leaf-node pair (bench/anchors.ts startNatsLeaf: a hub nats-server and a leaf
 * nats-server connected to it), QoS 0 (core NATS: no acknowledgements), in the direction of
 * ours: published by a client of the hub (the public side, like an external peer at the relay),
 * received by a subscriber of the leaf (the office side, like an internal peer behind the
 * contact point).
 *
 * The subscriber runs in its own child process (`nats-receiver` worker), as our receiver does.
 * The publisher runs in the bench process behind the same closed loop as ours (messages.ts
 * closedLoop: IN_FLIGHT messages between publish and receipt, same warm-up and window): a
 * message counts as done when the subscriber has received it. The subscriber reports how many
 * it has received over the worker's IPC channel, at most once per event-loop turn, so the loop
 * needs no acknowledgements on the NATS wire; what NATS carries is fire-and-forget.
 */
import type { NatsConnection } from '@nats-io/nats-core';
import type { BenchContext } from './context.js';
import type { WorkerHandle } from './ipc.js';
import { missing, startNatsLeaf } from './anchors.js';
import type { LoopSender } from './loop.js';
import { readStamp, Samples, sleep } from './util.js';

/** The subject the anchor's messages go to: where a message for peer `sink` would be published. */
export const NATS_SUBJECT = 'peer.sink.msg';
/** Probes for the subscriber's interest, under the subscriber's wildcard too but not counted. */
const PROBE_SUBJECT = 'peer.sink.probe';
const SUBSCRIBE_SUBJECT = 'peer.sink.>';
/** How long the leaf may take to pass the subscriber's interest to the hub. */
const INTEREST_TIMEOUT_MS = 10_000;
/** The worker event that carries the subscriber's running count. */
const RECEIVED_EVENT = 'received';

/** A started anchor: a sender for closedLoop, the subscriber's worker (for its CPU), and stop(). */
export interface NatsLeafPath {
  readonly sender: LoopSender;
  readonly receiver: WorkerHandle;
  /** the nats-server processes (hub, leaf) */
  readonly pids: readonly number[];
  stop(): Promise<void>;
}

/** Why the anchor cannot run here, or undefined. */
export function natsLeafMissing(): string | undefined {
  return missing('nats');
}

/**
 * Starts the leaf pair, the subscriber worker on the leaf and a publisher on the hub; resolves
 * once a message published on the hub has reached the subscriber (the leaf has passed on its
 * interest).
 */
export async function startNatsLeafPath(ctx: BenchContext): Promise<NatsLeafPath> {
  const { connect } = await import('@nats-io/transport-node');
  const leaf = await startNatsLeaf();
  let receiver: WorkerHandle | undefined;
  let nc: NatsConnection | undefined;
  let unsubscribe: () => void = () => {};
  const stop = async (): Promise<void> => {
    unsubscribe();
    await nc?.close().catch(() => undefined);
    await receiver?.stop();
    await leaf.stop();
  };
  try {
    receiver = await ctx.startWorker('nats-receiver', { url: leaf.leafUrl });
    nc = await connect({ servers: leaf.hubUrl, name: 'bench-src', reconnect: false });
    // Receipts in order: the n-th publish settles once the subscriber has counted n messages.
    const waiting: (() => void)[] = [];
    let head = 0;
    /** receipts settled and dropped from the front of `waiting` */
    let dropped = 0;
    unsubscribe = receiver.onEvent(RECEIVED_EVENT, (count) => {
      const received = count as number;
      while (head < waiting.length && dropped + head < received) waiting[head++]!();
      if (head >= 4096) {
        waiting.splice(0, head);
        dropped += head;
        head = 0;
      }
    });
    const conn = nc;
    const sender: LoopSender = {
      stats: { retransmits: 0 },
      send: (_to, payload) =>
        new Promise<void>((resolve) => {
          waiting.push(resolve);
          conn.publish(NATS_SUBJECT, payload);
        }),
    };
    // The leaf passes the subscription to the hub asynchronously (a message published before
    // is lost: QoS 0): probes on a subject of their own, not counted, until one arrives.
    const deadline = Date.now() + INTEREST_TIMEOUT_MS;
    while ((await receiver.call<number>('probes')) === 0) {
      if (Date.now() > deadline) throw new Error(`no message reached the leaf's subscriber within ${INTEREST_TIMEOUT_MS} ms`);
      conn.publish(PROBE_SUBJECT, Buffer.alloc(16));
      await conn.flush();
      await sleep(20);
    }
    return { sender, receiver, pids: leaf.pids, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/**
 * The `nats-receiver` worker role: subscribes on the leaf, counts what arrives,
 * records the one-way latency of measured messages, and tells the bench process its count
 * once per event-loop turn in which messages arrived.
 */
export async function startNatsReceiver(config: { url: string }): Promise<{ info: { role: string; pid: number; url: string }; ops: Record<string, (args: unknown) => unknown>; stop: () => Promise<void> }> {
  const { connect } = await import('@nats-io/transport-node');
  const nc = await connect({ servers: config.url, name: 'sink', reconnect: false });
  const samples = new Samples(2_000_000);
  let received = 0;
  let reportQueued = false;
  const report = (): void => {
    reportQueued = false;
    process.send?.({ event: RECEIVED_EVENT, data: received });
  };
  let probes = 0;
  nc.subscribe(SUBSCRIBE_SUBJECT, {
    callback: (_err, msg) => {
      if (msg.subject !== NATS_SUBJECT) {
        probes++;
        return;
      }
      received++;
      const d = msg.data;
      const latency = readStamp(Buffer.from(d.buffer, d.byteOffset, d.byteLength));
      if (latency !== undefined) samples.push(latency);
      if (!reportQueued) {
        reportQueued = true;
        setImmediate(report);
      }
    },
  });
  await nc.flush();
  return {
    info: { role: 'nats-receiver', pid: process.pid, url: config.url },
    stop: async () => {
      await nc.close();
    },
    ops: {
      received: () => received,
      probes: () => probes,
      latency: () => {
        const s = samples.summary();
        samples.clear();
        return s;
      },
    },
  };
}
