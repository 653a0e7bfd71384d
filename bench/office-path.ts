import type { BenchContext } from './context.js';
import type { WorkerHandle } from './ipc.js';
import { waitFor } from './util.js';

/** The path most message benchmarks measure: a relay worker, one contact point worker, and a receiver worker behind it. */
export interface OfficePath {
  readonly relay: WorkerHandle;
  readonly cp: WorkerHandle;
  readonly sink: WorkerHandle;
  /** the receiver's address, `<receiver>@<id>` */
  readonly to: string;
}

/**
 * Starts a relay, contact point `id` (its credential added at that relay; LAN peers from
 * 127.0.0.0/8 auto-approved) and a receiver `receiver` registered at it, and waits until the
 * relay knows the receiver. Every worker goes into `workers` as it starts (the caller stops them).
 */
export async function startOfficePath(
  ctx: BenchContext,
  workers: WorkerHandle[],
  o: { readonly id: string; readonly receiver: string; readonly relay?: Record<string, unknown>; readonly cp?: Record<string, unknown> },
): Promise<OfficePath> {
  const relay = await ctx.startWorker('relay', o.relay ?? {});
  workers.push(relay);
  const secret = await relay.call<string>('addCredential', { kind: 'contact-point', id: o.id });
  const cp = await ctx.startWorker('contact-point', { id: o.id, relayUrl: relay.url, secret, subnets: ['127.0.0.0/8'], ...o.cp });
  workers.push(cp);
  const sink = await ctx.startWorker('receiver', { url: cp.url, name: o.receiver });
  workers.push(sink);
  await waitFor(async () => (await relay.call<number>('peersCount', { id: o.id })) === 1, 10_000, 'the relay to learn the receiver');
  return { relay, cp, sink, to: `${o.receiver}@${o.id}` };
}
