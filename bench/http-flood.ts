/**
 * Benchmark: plain HTTP requests with large bodies against the relay and the contact point's
 * peer port, while a legitimate flow runs through both (issue 10, item 8).
 *
 * Processes: relay, contact point and an internal receiver each in their own worker
 * (bench/worker.ts); the external sender and the flood run in this process.
 * - quiet window: the sender sends stamped 1 KiB messages at RATE msgs/s to the receiver
 *   (external -> relay -> tunnel -> contact point -> peer); the receiver records one-way latency.
 * - flood window: the same flow, while SOCKETS raw TCP connections to each server send
 *   `POST` with `Content-Length: 100000000` and push the body as fast as the kernel takes it;
 *   a connection the server closes is opened again (an attacker keeps going), each lane up to
 *   BODY_BYTES in all, for at most the window.
 * Reported: p99 of the flow in both windows, relay and contact point CPU time in each, the growth of peak RSS (getrusage maxRSS) of relay
 * and contact point over the flood, the bytes relay and contact point read in each window
 * (the flow alone in the quiet one), and how many body bytes the flood got written (into
 * kernel buffers, which a server that does not read discards when it closes).
 */
import { readFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { PeerClient } from '../core/peer/peer-client.js';
import type { BenchContext } from './context.js';
import type { WorkerHandle } from './ipc.js';
import { emit, note, round, sleep, stampedPayload, waitFor } from './util.js';

const CP_ID = 'flood-hq';
const RECEIVER = 'sink';
const RATE = 1_000;
/** raw connections per attacked server (relay, peer port) */
const SOCKETS = 14;
/** declared and, at most, sent per connection lane */
const BODY_BYTES = 100_000_000;

interface Summary {
  count: number;
  p50: number;
  p99: number;
  max: number;
}

async function maxRssMb(w: WorkerHandle): Promise<number> {
  return (await w.call<NodeJS.ResourceUsage>('usage')).maxRSS / 1024;
}

/**
 * Bytes a worker has read with read(2) so far, sockets included (Linux /proc/PID/io rchar):
 * the HTTP parser reads bodies straight from the socket handle, past any JS-level counter.
 */
async function bytesReadMb(w: WorkerHandle): Promise<number> {
  const io = await readFile(`/proc/${w.pid}/io`, 'utf8').catch(() => '');
  const rchar = /^rchar:\s*(\d+)/m.exec(io)?.[1];
  return rchar === undefined ? NaN : Number(rchar) / (1024 * 1024);
}

/** CPU time (user + system) a worker has used so far, in ms. */
async function cpuMs(w: WorkerHandle): Promise<number> {
  const u = await w.call<NodeJS.CpuUsage>('cpu');
  return (u.user + u.system) / 1000;
}

async function rssMb(w: WorkerHandle): Promise<number> {
  return (await w.call<NodeJS.MemoryUsage>('memory')).rss / (1024 * 1024);
}

/** Paced stamped messages for `windowMs`; the receiver's latency summary of them. */
async function pacedWindow(sender: PeerClient, receiver: WorkerHandle, windowMs: number): Promise<Summary & { failed: number }> {
  await receiver.call('latency'); // clears
  let sent = 0;
  let outstanding = 0;
  let failed = 0;
  const total = Math.round((windowMs / 1000) * RATE);
  const start = performance.now();
  const hardStop = start + windowMs * 2 + 5_000;
  while (sent < total && performance.now() < hardStop) {
    const due = Math.min(total, Math.floor(((performance.now() - start) * RATE) / 1000));
    while (sent < due) {
      sent++;
      outstanding++;
      sender.send(`${RECEIVER}@${CP_ID}`, stampedPayload(1024, true)).then(
        () => void outstanding--,
        () => {
          outstanding--;
          failed++;
        },
      );
    }
    await sleep(1);
  }
  await waitFor(() => outstanding === 0, 15_000, 'paced messages to be acknowledged').catch(() => undefined);
  return { ...(await receiver.call<Summary>('latency')), failed };
}

/** SOCKETS lanes per port, each re-opening its connection when the server closes it. */
function bodyFlood(ports: readonly number[], windowMs: number): Promise<{ connections: number; acceptedMb: number; closedByServer: number }> {
  const chunk = Buffer.alloc(64 * 1024, 0x61);
  const deadline = Date.now() + windowMs;
  let connections = 0;
  let accepted = 0;
  let closedByServer = 0;
  const lane = (port: number): Promise<void> =>
    new Promise((resolve) => {
      let laneBytes = 0;
      const open = (): void => {
        if (Date.now() >= deadline || laneBytes >= BODY_BYTES) return resolve();
        connections++;
        const s = connect(port, '127.0.0.1');
        let mine = 0;
        const stop = setTimeout(() => s.destroy(), Math.max(0, deadline - Date.now()));
        s.on('error', () => undefined);
        s.on('data', () => undefined);
        s.on('close', () => {
          clearTimeout(stop);
          if (Date.now() < deadline) closedByServer++;
          setTimeout(open, 1);
        });
        s.write(`POST /upload HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Length: ${BODY_BYTES}\r\n\r\n`);
        const pump = (): void => {
          while (!s.destroyed && mine < BODY_BYTES && laneBytes < BODY_BYTES) {
            mine += chunk.length;
            laneBytes += chunk.length;
            const ok = s.write(chunk, (err) => {
              if (!err) accepted += chunk.length;
            });
            if (!ok) return void s.once('drain', pump);
          }
        };
        pump();
      };
      open();
    });
  return Promise.all(ports.flatMap((p) => Array.from({ length: SOCKETS }, () => lane(p)))).then(() => ({
    connections,
    acceptedMb: accepted / (1024 * 1024),
    closedByServer,
  }));
}

export async function runHttpFlood(ctx: BenchContext): Promise<void> {
  if (!ctx.selected('http-flood')) return;
  const windowMs = ctx.quick ? 4_000 : 10_000;
  note(`http-flood: ${SOCKETS} connections x ${BODY_BYTES / 1e6} MB declared, against relay and peer port, ${windowMs / 1000} s`);
  const relay = await ctx.startWorker('relay', {});
  const workers: WorkerHandle[] = [relay];
  let sender: PeerClient | undefined;
  try {
    const cpSecret = await relay.call<string>('addCredential', { kind: 'contact-point', id: CP_ID });
    const senderSecret = await relay.call<string>('addCredential', { kind: 'external', id: 'flow' });
    const cp = await ctx.startWorker('contact-point', { id: CP_ID, relayUrl: relay.url, secret: cpSecret, subnets: ['127.0.0.0/8'] });
    workers.push(cp);
    const receiver = await ctx.startWorker('receiver', { url: cp.url, name: RECEIVER });
    workers.push(receiver);
    sender = new PeerClient({ role: 'external', url: relay.url, name: 'flow', secret: senderSecret, proxy: null });
    sender.start();
    await sender.ready();
    await pacedWindow(sender, receiver, 1_000); // warm-up

    const peak0 = await Promise.all([maxRssMb(relay), maxRssMb(cp)]);
    const read0 = await Promise.all([bytesReadMb(relay), bytesReadMb(cp)]);
    const cpu0 = await Promise.all([cpuMs(relay), cpuMs(cp)]);
    const quiet = await pacedWindow(sender, receiver, windowMs);
    const read1 = await Promise.all([bytesReadMb(relay), bytesReadMb(cp)]);
    const cpu1 = await Promise.all([cpuMs(relay), cpuMs(cp)]);
    const peakBefore = await Promise.all([maxRssMb(relay), maxRssMb(cp)]);
    const floodDone = bodyFlood([Number(new URL(relay.url).port), Number(new URL(cp.url).port)], windowMs);
    const during = await pacedWindow(sender, receiver, windowMs);
    const flood = await floodDone;
    const read2 = await Promise.all([bytesReadMb(relay), bytesReadMb(cp)]);
    const cpu2 = await Promise.all([cpuMs(relay), cpuMs(cp)]);
    const peakAfter = await Promise.all([maxRssMb(relay), maxRssMb(cp)]);
    const rssAfter = await Promise.all([rssMb(relay), rssMb(cp)]);
    emit({
      name: 'http-flood',
      mode: ctx.quick ? 'quick' : 'full',
      sockets_per_server: SOCKETS,
      declared_body_mb: BODY_BYTES / 1e6,
      window_s: windowMs / 1000,
      flood_connections: flood.connections,
      flood_closed_by_server: flood.closedByServer,
      flood_body_mb_written: round(flood.acceptedMb, 1),
      relay_read_mb_quiet: round(read1[0]! - read0[0]!, 1),
      relay_read_mb_flood: round(read2[0]! - read1[0]!, 1),
      contact_point_read_mb_quiet: round(read1[1]! - read0[1]!, 1),
      contact_point_read_mb_flood: round(read2[1]! - read1[1]!, 1),
      relay_cpu_ms_quiet: Math.round(cpu1[0]! - cpu0[0]!),
      relay_cpu_ms_flood: Math.round(cpu2[0]! - cpu1[0]!),
      contact_point_cpu_ms_quiet: Math.round(cpu1[1]! - cpu0[1]!),
      contact_point_cpu_ms_flood: Math.round(cpu2[1]! - cpu1[1]!),
      relay_peak_rss_growth_mb_quiet: round(peakBefore[0]! - peak0[0]!, 1),
      relay_peak_rss_growth_mb_flood: round(peakAfter[0]! - peakBefore[0]!, 1),
      contact_point_peak_rss_growth_mb_quiet: round(peakBefore[1]! - peak0[1]!, 1),
      contact_point_peak_rss_growth_mb_flood: round(peakAfter[1]! - peakBefore[1]!, 1),
      relay_rss_after_mb: round(rssAfter[0]!, 1),
      contact_point_rss_after_mb: round(rssAfter[1]!, 1),
      flow_rate_msgs_per_s: RATE,
      flow_p99_ms_quiet: round(quiet.p99),
      flow_p99_ms_flood: round(during.p99),
      flow_max_ms_flood: round(during.max),
      flow_failed: quiet.failed + during.failed,
    });
  } finally {
    await sender?.stop();
    for (const w of workers.reverse()) await w.stop();
  }
}
