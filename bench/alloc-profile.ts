/**
 * What a benchmark process allocates on V8's heap during one phase of a benchmark, by allocation
 * site, and per message.
 *
 * The throughput rounds' SDK sender (a `loop-sender` worker, bench/loop.ts): sampled over each
 * counted window, with the bytes per acked message:
 *
 *   BENCH_WORKER_FLAGS="--import ./dist/bench/alloc-profile.js" node dist/bench/run.js --quick --only throughput
 *
 * It starts V8's sampling heap profiler (one sample per ~4 KiB allocated, objects the GC has
 * collected since included) when the loop starts counting and stops when it stops, then prints
 * (to stderr, `[alloc sender PID]`) the bytes allocated per message and the sites that allocated
 * most (the function and its caller). ALLOC_OUT=FILE also writes the profile (a .heapprofile for
 * Chrome's tools; the pid is appended).
 *
 * In the bench process (the NATS anchor's publisher and the latency rounds' SDK sender live
 * there), between two notes: from the first note containing ALLOC_FROM (default `round 1: path`)
 * to the next containing ALLOC_TO (default `round 1: NATS`), whose `N msgs/s` gives the messages
 * of the phase: in a --quick run, the NATS round (a full run has the plain path's round between):
 *
 *   node --import ./dist/bench/alloc-profile.js dist/bench/run.js --quick --only throughput
 *
 * In any other worker (the receiver, relay or contact point, which print no notes), by time
 * instead: ALLOC_AFTER_MS=N ALLOC_FOR_MS=M samples from N ms after the process starts for M ms,
 * and prints to the worker's stderr without a per-message figure (divide by the phase's messages):
 *
 *   BENCH_WORKER_FLAGS="--import ./dist/bench/alloc-profile.js" ALLOC_AFTER_MS=9000 \
 *     ALLOC_FOR_MS=3000 node dist/bench/run.js --quick --only throughput
 *
 * Why: under a closed loop the sender's CPU per message moves with its garbage collections as
 * much as with its code, and on a shared host its CPU time is noisy. Bytes allocated per message
 * are not: they say whether a change made less garbage (for example 596 -> 473 B per message in
 * PeerClient.send when its promise stopped making a closure).
 */
import { subscribe } from 'node:diagnostics_channel';
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';

interface SamplingNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: SamplingNode[];
}

const FROM = process.env.ALLOC_FROM ?? 'round 1: path';
const TO = process.env.ALLOC_TO ?? 'round 1: NATS';
/** bench/loop.ts LOOP_CHANNEL (not imported: this preload loads nothing of the bench's before it runs) */
const LOOP_CHANNEL = 'contact-point:bench:closed-loop';
const TOP = Number(process.env.ALLOC_TOP ?? 25);

const session = new Session();
session.connect();
function post<T>(method: string, params?: object): Promise<T> {
  return new Promise((resolve, reject) => session.post(method, params ?? {}, (err, result) => (err ? reject(err) : resolve(result as T))));
}

function where(n: SamplingNode): string {
  const f = n.callFrame;
  const file = f.url.replace(/^file:\/\//, '').split('/').slice(-2).join('/');
  return `${f.functionName || '(anonymous)'}${file ? ` ${file}:${f.lineNumber + 1}` : ''}`;
}

/** Self bytes by "site < caller". */
function bySite(root: SamplingNode): { total: number; sites: Map<string, number> } {
  const sites = new Map<string, number>();
  let total = 0;
  const walk = (n: SamplingNode, caller: string): void => {
    const here = where(n);
    if (n.selfSize > 0) {
      total += n.selfSize;
      const key = caller ? `${here} < ${caller}` : here;
      sites.set(key, (sites.get(key) ?? 0) + n.selfSize);
    }
    for (const c of n.children) walk(c, here);
  };
  walk(root, '');
  return { total, sites };
}

/** `messages`: how many the phase carried, or a note whose `N msgs/s` gives them at the phase's rate. */
function report(head: SamplingNode, ms: number, messagesOrNote: number | string): string {
  const { total, sites } = bySite(head);
  const rate = typeof messagesOrNote === 'string' ? /(\d+) msgs\/s/.exec(messagesOrNote) : null;
  const messages = typeof messagesOrNote === 'number' ? messagesOrNote : rate ? (Number(rate[1]) * ms) / 1000 : undefined;
  const how = typeof messagesOrNote === 'number' ? 'acked in the window' : "at the phase's rate";
  const lines = [`[alloc] ${(total / 1e6).toFixed(1)} MB sampled in ${Math.round(ms)} ms` + (messages ? `, ~${Math.round(total / messages)} B per message (${Math.round(messages)} messages ${how})` : '')];
  for (const [site, bytes] of [...sites].sort((a, b) => b[1] - a[1]).slice(0, TOP)) {
    lines.push(`[alloc] ${((100 * bytes) / total).toFixed(1).padStart(5)}%` + (messages ? ` ${String(Math.round(bytes / messages)).padStart(5)} B/msg` : '') + `  ${site}`);
  }
  return lines.join('\n') + '\n';
}

let startedAt = 0;
let done = false;

function start(): void {
  startedAt = performance.now();
  void post('HeapProfiler.enable').then(() =>
    post('HeapProfiler.startSampling', { samplingInterval: 4096, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true }),
  );
}

function stop(messagesOrNote: number | string, out: (text: string) => void, outFile = process.env.ALLOC_OUT): void {
  done = true;
  const ms = performance.now() - startedAt;
  void post<{ profile: { head: SamplingNode } }>('HeapProfiler.stopSampling').then(({ profile }) => {
    if (outFile) writeFileSync(outFile, JSON.stringify(profile));
    out(report(profile.head, ms, messagesOrNote));
  });
}

const write = process.stderr.write.bind(process.stderr) as (chunk: string | Uint8Array, ...rest: unknown[]) => boolean;
if (process.argv[2] === 'loop-sender') {
  // A throughput round's sender (bench/worker.js loop-sender): the counted window of its loop.
  const tag = `[alloc sender ${process.pid}]`;
  subscribe(LOOP_CHANNEL, (m) => {
    const { on, acked } = m as { on: boolean; acked: number };
    if (on && startedAt === 0) start();
    else if (!on && startedAt !== 0 && !done) stop(acked, (text) => void write(text.replaceAll('[alloc]', tag)), process.env.ALLOC_OUT ? `${process.env.ALLOC_OUT}.${process.pid}` : undefined);
  });
} else if (process.env.ALLOC_AFTER_MS !== undefined) {
  const after = Number(process.env.ALLOC_AFTER_MS);
  const span = Number(process.env.ALLOC_FOR_MS ?? 3000);
  setTimeout(() => {
    start();
    setTimeout(() => stop('', (text) => void write(text.replaceAll('[alloc]', `[alloc ${process.argv[2] ?? 'process'} ${process.pid}]`))), span).unref();
  }, after).unref();
} else {
  process.stderr.write = ((chunk: string | Uint8Array, ...rest: unknown[]): boolean => {
    const text = String(chunk);
    if (!done && startedAt === 0 && text.includes(FROM)) start();
    else if (!done && startedAt !== 0 && text.includes(TO)) stop(text, (report) => void write(report));
    return write(chunk, ...rest);
  }) as typeof process.stderr.write;
}
