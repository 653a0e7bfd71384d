/**
 * The closed loop of the message benchmarks (messages.ts closedLoop): a sender keeps exactly
 * `inFlight` messages un-acked, each acknowledgement sends the next one, and the acks are
 * counted while counting is on.
 *
 * It runs where the sender is: in the bench process (startLoop), or in a `loop-sender` worker
 * of its own (startLoopSender, driven by remoteLoop). A sender in a fresh process per round
 * measures the same work whatever ran before it: in the bench process the SDK's sender
 * shares its heap, and so its GC, with every earlier round and with the NATS anchor's publisher
 * (3 Dec 2026: a direct-baseline round run first left the next path round with 0 or 2-4
 * mark-compacts a second depending on the build, ~25 % of the sender's CPU per message).
 */
import { channel } from 'node:diagnostics_channel';
import { performance } from 'node:perf_hooks';
import { PeerClient } from '../core/peer/peer-client.js';
import type { WorkerHandle } from './ipc.js';
import { sleep, stampedPayload } from './util.js';

/** What a closed loop needs of a sender: ours is a PeerClient, the NATS anchor's a publisher. */
export interface LoopSender {
  send(to: string, payload: Buffer): Promise<unknown>;
  readonly stats: { readonly retransmits: number };
}

/** The acks counted so far and when (this process's performance.now()), with the sender's retransmits. */
export interface LoopCount {
  readonly acked: number;
  readonly at: number;
  readonly retransmits: number;
}

/** How a loop ended: sends that failed and the last error. */
export interface LoopEnd {
  readonly failed: number;
  readonly lastError: string | undefined;
}

/** A running closed loop. */
export interface LoopControl {
  /** Starts (true) or ends (false) the counting; payloads sent while counting are stamped as measured. */
  count(on: boolean): Promise<LoopCount>;
  /** Sends no more and waits (at most `drainMs`) for what is in flight. */
  stop(drainMs: number): Promise<LoopEnd>;
}

/**
 * Each count(on) of a loop is published here ({ on, acked, at }): bench/alloc-profile.ts samples
 * a loop-sender worker's allocations over the counted window.
 */
export const LOOP_CHANNEL = 'contact-point:bench:closed-loop';
const loopChannel = channel(LOOP_CHANNEL);

/** Hard cap so no loop runs away, whatever the machine does. */
const MAX_MESSAGES_PER_LOOP = 5_000_000;

/** Starts a closed loop of `inFlight` messages of `bytes` from `sender` to `to`, in this process. */
export function startLoop(sender: LoopSender, to: string, inFlight: number, bytes: number): LoopControl {
  let sent = 0;
  let outstanding = 0;
  let failed = 0;
  let acked = 0;
  let counting = false;
  let stopped = false;
  let lastError: string | undefined;
  let drained: () => void = () => {};
  const allDone = new Promise<void>((r) => (drained = r));
  const next = (): void => {
    if (stopped || sent >= MAX_MESSAGES_PER_LOOP) {
      if (outstanding === 0) drained();
      return;
    }
    sent++;
    outstanding++;
    sender.send(to, stampedPayload(bytes, counting)).then(onAck, onFail);
  };
  const onAck = (): void => {
    outstanding--;
    if (counting) acked++;
    next();
  };
  const onFail = (err: unknown): void => {
    outstanding--;
    failed++;
    lastError = err instanceof Error ? err.message : String(err);
    next();
  };
  for (let i = 0; i < inFlight; i++) next();
  return {
    count: (on) => {
      if (on) acked = 0;
      counting = on;
      const c: LoopCount = { acked, at: performance.now(), retransmits: sender.stats.retransmits };
      if (loopChannel.hasSubscribers) loopChannel.publish({ on, acked: c.acked, at: c.at });
      return Promise.resolve(c);
    },
    stop: async (drainMs) => {
      stopped = true;
      if (outstanding === 0) drained();
      await Promise.race([allDone, sleep(drainMs)]);
      return { failed, lastError };
    },
  };
}

/** The same loop run by a `loop-sender` worker (its sender, its process), driven from here. */
export async function remoteLoop(worker: WorkerHandle, to: string, inFlight: number, bytes: number): Promise<LoopControl> {
  await worker.call('loopStart', { to, inFlight, bytes });
  return {
    count: (on) => worker.call<LoopCount>('loopCount', { on }),
    stop: (drainMs) => worker.call<LoopEnd>('loopStop', { drainMs }, drainMs + 30_000),
  };
}

export interface LoopSenderConfig {
  /** the relay's (or the ack server's) ws URL */
  readonly url: string;
  readonly name: string;
  readonly secret: string;
  readonly seal?: 'auto' | 'off';
  /** sent one message, acknowledged, before the worker is ready: the path works, the receiver's sealing key is known */
  readonly probeTo: string;
  readonly probeBytes: number;
}

/**
 * The `loop-sender` worker role: an external SDK sender (a PeerClient, as an application holds
 * it) that runs one closed loop at a time on request.
 */
export async function startLoopSender(config: LoopSenderConfig): Promise<{ info: { role: string; pid: number; url: string }; ops: Record<string, (args: unknown) => unknown>; stop: () => Promise<void> }> {
  const client = new PeerClient({ role: 'external', url: config.url, name: config.name, secret: config.secret, proxy: null, seal: config.seal ?? 'auto' });
  client.start();
  try {
    await client.ready();
    await client.send(config.probeTo, stampedPayload(config.probeBytes, false));
  } catch (err) {
    await client.stop();
    throw err;
  }
  let loop: LoopControl | undefined;
  return {
    info: { role: 'loop-sender', pid: process.pid, url: config.url },
    stop: () => client.stop(),
    ops: {
      loopStart: (a) => {
        if (loop) throw new Error('a loop is already running');
        const { to, inFlight, bytes } = a as { to: string; inFlight: number; bytes: number };
        loop = startLoop(client, to, inFlight, bytes);
        return null;
      },
      loopCount: (a) => {
        if (!loop) throw new Error('no loop is running');
        return loop.count((a as { on: boolean }).on);
      },
      loopStop: async (a) => {
        if (!loop) throw new Error('no loop is running');
        const end = await loop.stop((a as { drainMs: number }).drainMs);
        loop = undefined;
        return end;
      },
    },
  };
}
