/**
 * `npm run bench [-- options]`: the Contact Point benchmarks. Results go to stdout, one JSON
 * object per line (name, value, unit, the baseline measured in the same run, ratio, target);
 * progress notes go to stderr.
 *
 *   --quick              shorter windows (also BENCH_QUICK=1); every line says mode: "quick". Without --only,
 *                        only the quick set (QUICK_SET: throughput and latency, bulk over ws and HTTP through
 *                        expose, footprint; each with its anchor), in under three minutes
 *   --all                with --quick: every benchmark (about nine minutes)
 *   --only a,b           run only these: throughput (with a NATS leaf-node pair carrying the same messages
 *                        QoS 0 as its anchor, skipped with the reason when nats-server is missing),
 *                        latency (group: messages), peers,
 *                        mediation-bulk, mediation-http, mediation-expose, mediation-udp, mediation-memory,
 *                        udp-seal (group: mediation),
 *                        gui (the admin GUI in Chromium under 20,000 msgs/s; needs `npm run build`),
 *                        http-flood (large-body HTTP requests against relay and peer port under a flow),
 *                        outage (delivery of messages queued during a tunnel outage, after its return),
 *                        cluster (same-node vs cross-node acked messages through 2 relay nodes on nats-server:
 *                        throughput and paced latency; and cluster-memory, a relay's memory per office at
 *                        1,000 offices as a cluster node vs alone; cluster-messages: the messages alone),
 *                        cluster-failover (kill -9 of the node carrying an office's traffic: two tunnels vs one),
 *                        direct (acked messages from an external peer at the contact point's direct
 *                        listener vs at the relay, same run),
 *                        cluster-bulk (bulk TCP through an exposure on the other node vs the office's node),
 *                        history (throughput with the contact point's history on vs off, disk bytes per
 *                        message, a filtered page over 100,000 stored entries),
 *                        metrics-throughput, metrics-scrape (group: metrics; Prometheus metrics on vs off,
 *                        and the relay's scrape with 1,000 offices),
 *                        footprint (memory per LAN peer and per office, attach time of 5,000 peers, idle tunnel
 *                        bytes, against a mosquitto bridge and a NATS leaf node started in the same run),
 *                        attach (footprint's attach and its anchors alone, with the CPU of the contact point,
 *                        the relay and the SDK clients apart: about a minute, for A/B of the hello),
 *                        content-check (acked messages with no content check vs an allow-all check command
 *                        vs the built-in json-depth check, same contact point, same run),
 *                        sealing (acked messages and paced p99, sealed vs plain, same run)
 *   --cpu-prof[=DIR]     profile the worker processes (relay, contact point, ack server, lan, load) with
 *                        node --cpu-prof into DIR (default bench-profiles/); summarise with
 *                        node dist/bench/profile-summary.js DIR
 *
 * Environment: BENCH_PEERS (default 1000) for the peers group, BENCH_LOG=info|debug for worker logs,
 * BENCH_WORKER_FLAGS="--max-semi-space-size=32" extra node flags for the worker processes,
 * (every worker runs with --max-semi-space-size=1, as the product's processes keep their young
 * generation: core/runtime/gc.ts; a size chosen here wins, for all; the bench process keeps node's),
 * BENCH_WORKER_STDOUT=1 to let the workers' stdout through (their --trace-gc lines; it mixes with the JSON lines),
 * BENCH_IN_FLIGHT (default 256) for the throughput loop, BENCH_STREAMS (default 1000) for mediation-memory,
 * BENCH_SCRAPE_EVERY_MS (default 1000) for how often metrics-throughput scrapes /metrics.
 */
import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { runCluster, runClusterBulk } from './cluster.js';
import { runDirect } from './direct.js';
import { runContentCheck } from './content-check.js';
import { runClusterFailover } from './cluster-failover.js';
import type { BenchContext } from './context.js';
import { WorkerHandle } from './ipc.js';
import { runFootprint } from './footprint.js';
import { runGui } from './gui.js';
import { runHistory } from './history.js';
import { runHttpFlood } from './http-flood.js';
import { runMediation } from './mediation.js';
import { runMessages } from './messages.js';
import { runMetrics } from './metrics.js';
import { runOutage } from './outage.js';
import { runPeers } from './peers.js';
import { runSealing } from './sealing.js';
import { runUdpSeal } from './udp-seal.js';
import { youngSizeChosen } from '../core/runtime/gc.js';
import { note, watchGc } from './util.js';

const GROUPS: Record<string, readonly string[]> = {
  messages: ['throughput', 'latency'],
  throughput: ['throughput'],
  latency: ['latency'],
  peers: ['peers'],
  sockets: ['peers'],
  idle: ['peers'],
  memory: ['peers'],
  mediation: ['mediation-bulk', 'mediation-bulk-wss', 'mediation-http', 'mediation-expose', 'mediation-udp', 'mediation-memory', 'udp-seal'],
  'mediation-bulk': ['mediation-bulk', 'mediation-bulk-wss'],
  'mediation-http': ['mediation-http'],
  'mediation-expose': ['mediation-expose'],
  'mediation-udp': ['mediation-udp'],
  'mediation-memory': ['mediation-memory'],
  'udp-seal': ['udp-seal'],
  gui: ['gui'],
  'http-flood': ['http-flood'],
  outage: ['outage'],
  cluster: ['cluster', 'cluster-memory', 'cluster-bulk'],
  'cluster-messages': ['cluster'],
  'cluster-memory': ['cluster-memory'],
  'cluster-failover': ['cluster-failover'],
  'cluster-bulk': ['cluster-bulk'],
  direct: ['direct'],
  history: ['history'],
  metrics: ['metrics-throughput', 'metrics-scrape'],
  'metrics-throughput': ['metrics-throughput'],
  'metrics-scrape': ['metrics-scrape'],
  sealing: ['sealing'],
  footprint: ['footprint'],
  attach: ['attach'],
  'content-check': ['content-check'],
};

/**
 * What `--quick` runs when no --only names anything (and --all is not given): issue 17's
 * comparisons, each against its anchor in the same run (NATS leaf, ssh -R, socat, mosquitto),
 * in about two and a half minutes. Bulk over wss and the plain and in-process receiver rounds are left
 * to full runs. Everything else runs with `--quick --all`, or by name with --only.
 */
const QUICK_SET: readonly string[] = ['throughput', 'latency', 'mediation-bulk', 'mediation-expose', 'footprint'];

/** A bad command line: said in one line, without a stack. */
class UsageError extends Error {}

interface Args {
  quick: boolean;
  /** --all: every benchmark, also with --quick */
  all: boolean;
  /** --quick without --only or --all: QUICK_SET was chosen for it */
  quickSet: boolean;
  only: Set<string>;
  cpuProfDir: string | undefined;
}

function usage(): string {
  return `usage: node dist/bench/run.js [--quick [--all]] [--only ${Object.keys(GROUPS).join(',')}] [--cpu-prof[=DIR]]`;
}

function parseArgs(argv: readonly string[]): Args {
  const args: Args = { quick: process.env.BENCH_QUICK === '1', all: false, quickSet: false, only: new Set(), cpuProfDir: undefined };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--quick') args.quick = true;
    else if (a === '--all') args.all = true;
    else if (a === '--only' || a.startsWith('--only=')) {
      const list = a === '--only' ? argv[++i] : a.slice('--only='.length);
      if (!list) throw new UsageError(`--only needs a list. ${usage()}`);
      for (const name of list.split(',').map((s) => s.trim()).filter(Boolean)) {
        const group = GROUPS[name];
        if (!group) throw new UsageError(`unknown benchmark "${name}" (known: ${Object.keys(GROUPS).join(', ')})`);
        for (const g of group) args.only.add(g);
      }
    } else if (a === '--cpu-prof' || a.startsWith('--cpu-prof=')) {
      args.cpuProfDir = resolve(a.includes('=') ? a.slice('--cpu-prof='.length) : 'bench-profiles');
    } else if (a === '--help' || a === '-h') {
      process.stderr.write(usage() + '\n');
      process.exit(0);
    } else throw new UsageError(`unknown option "${a}". ${usage()}`);
  }
  if (args.all && args.only.size) throw new UsageError(`--all and --only exclude each other. ${usage()}`);
  if (args.quick && !args.all && args.only.size === 0) {
    args.quickSet = true;
    for (const name of QUICK_SET) args.only.add(name);
  }
  return args;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const workerScript = new URL('./worker.js', import.meta.url);
  let seq = 0;
  const workerFlags = (process.env.BENCH_WORKER_FLAGS ?? '').split(/\s+/).filter(Boolean);
  if (workerFlags.length) note(`worker node flags: ${workerFlags.join(' ')}`);
  if (args.cpuProfDir) {
    mkdirSync(args.cpuProfDir, { recursive: true });
    note(`cpu profiles of the workers go to ${args.cpuProfDir}`);
  }
  const ctx: BenchContext = {
    quick: args.quick,
    selected: (name) => args.only.size === 0 || args.only.has(name),
    startWorker: (role, config, opts = {}) => {
      const execArgv: string[] = [];
      if (opts.exposeGc) execArgv.push('--expose-gc');
      execArgv.push(...workerFlags);
      // As bin/contact-point.js starts the product's processes: V8's young generation kept at its
      // initial 1 MiB a semi-space (core/runtime/gc.ts keepYoungGenerationSmall; on the command
      // line V8 ignores a growth factor below 2, so as its maximum), unless BENCH_WORKER_FLAGS chose its size.
      // Every role, the baselines' too (ack server, forwarders, the NATS subscriber), so that no
      // ratio comes from the setting rather than the work; the SDK roles as `contact-point peer` runs.
      // The throughput rounds' SDK sender (loop-sender) keeps node's default, as the bench process does (YOUNG_FLAG).
      if (role !== 'loop-sender' && !youngSizeChosen([...workerFlags, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)])) execArgv.push(YOUNG_FLAG);
      if (args.cpuProfDir) execArgv.push('--cpu-prof', `--cpu-prof-dir=${args.cpuProfDir}`, `--cpu-prof-name=${role}.${++seq}.cpuprofile`);
      return WorkerHandle.start(workerScript, role, config, execArgv);
    },
  };
  note(
    `mode ${args.quick ? 'quick' : 'full'}; ${args.only.size ? `only ${[...args.only].join(', ')}` : 'all benchmarks'}` +
      (args.quickSet ? ' (the quick set: issue 17\'s comparisons against their anchors; --quick --all runs everything, --only NAME one)' : ''),
  );
  const started = Date.now();
  // The bench process's GC pauses (SDK senders run here): latency tails are checked against them (bench/tail.ts).
  watchGc();
  const groups: [string, (c: BenchContext) => Promise<void>][] = [
    ['messages', runMessages],
    ['peers', runPeers],
    ['mediation', runMediation],
    ['udp-seal', runUdpSeal],
    ['gui', runGui],
    ['http-flood', runHttpFlood],
    ['outage', runOutage],
    ['cluster', runCluster],
    ['cluster-bulk', runClusterBulk],
    ['direct', runDirect],
    ['cluster-failover', runClusterFailover],
    ['history', runHistory],
    ['metrics', runMetrics],
    ['sealing', runSealing],
    ['footprint', runFootprint],
    ['content-check', runContentCheck],
  ];
  /** wall seconds of each group that ran (one that selected nothing takes ~0 s and is left out) */
  const took: string[] = [];
  for (const [name, run] of groups) {
    const t0 = Date.now();
    await run(ctx);
    const s = (Date.now() - t0) / 1000;
    if (s >= 0.5) took.push(`${name} ${Math.round(s)} s`);
  }
  note(`done in ${Math.round((Date.now() - started) / 1000)} s${took.length > 1 ? ` (${took.join(', ')})` : ''}`);
}

/**
 * The young generation's size for every worker (see startWorker). The bench process itself, which
 * holds the SDK senders and the NATS publisher as an application would, keeps node's default, as
 * does the `loop-sender` worker (the throughput rounds' sender, bench/loop.ts):
 * with up to 256 messages in flight a sender's messages outlive a 1 MiB young generation, and
 * it ran a mark-compact about every second (a sealing run: 20-24 in the paced windows, against
 * 0 with node's default, and 10-25% fewer plain msgs/s).
 */
const YOUNG_FLAG = '--max-semi-space-size=1';

main().then(
  () => process.exit(0),
  (err: unknown) => {
    if (err instanceof UsageError) {
      process.stderr.write(`[bench] ${err.message}\n`);
      process.exit(2);
    }
    process.stderr.write(`[bench] failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
