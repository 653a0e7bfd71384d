/**
 * Many offices at one relay, for the metrics scrape benchmark: one Gateway (the contact point's
 * real tunnel: hello with its environment, keepalive, announced peers) per office, all in this
 * worker process, so the relay holds real tunnel sessions without 1,000 contact point processes.
 */
import { Gateway } from '../core/contact-point/gateway.js';
import { resolveTiming } from '../core/protocol/timing.js';
import type { Logger } from '../core/runtime/logger.js';
import type { ReadyInfo } from './ipc.js';
import { pool } from './util.js';

/** Tunnels in their hello at once: the relay allows 32 pending hellos per source address. */
const CONNECT_CONCURRENCY = 16;
const CONNECT_TIMEOUT_MS = 30_000;

export interface OfficesConfig {
  readonly relayUrl: string;
  readonly offices: readonly { readonly id: string; readonly secret: string }[];
  /** peer names each office announces */
  readonly peersEach: number;
}

export async function startOffices(config: OfficesConfig, logger: Logger): Promise<{ info: ReadyInfo; ops: Record<string, (a: unknown) => unknown>; stop: () => Promise<void> }> {
  const timing = resolveTiming();
  const names = Array.from({ length: config.peersEach }, (_v, i) => `peer-${i}`);
  const gateways: Gateway[] = [];
  await pool(config.offices, CONNECT_CONCURRENCY, async (o) => {
    const g = new Gateway({ relayUrl: config.relayUrl, id: o.id, secret: o.secret, logger, software: 'bench-offices', registeredNames: () => names, timing, onFrame: () => undefined });
    gateways.push(g);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`office ${o.id}: tunnel not up within ${CONNECT_TIMEOUT_MS} ms (${g.status().lastError ?? 'no error'})`)), CONNECT_TIMEOUT_MS);
      g.once('up', () => {
        clearTimeout(timer);
        resolve();
      });
      g.start();
    });
  });
  return {
    info: { role: 'offices', pid: process.pid, url: config.relayUrl },
    stop: () => {
      for (const g of gateways) g.stop();
      return Promise.resolve();
    },
    ops: { connected: () => gateways.filter((g) => g.connected).length },
  };
}
