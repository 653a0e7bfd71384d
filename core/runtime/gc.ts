import { setFlagsFromString } from 'node:v8';

/**
 * Makes V8 do two kinds of its garbage-collection work on the main thread alone, as node's
 * command line `--no-parallel-scavenge --no-concurrent-sweeping
 * --no-concurrent-array-buffer-sweeping` would: collecting the young generation (scavenges: many
 * per second under traffic), and sweeping after a collection (the old generation's pages, and the
 * list of ArrayBuffers whose memory can be freed). Old-generation marking stays concurrent.
 *
 * Why scavenges: by default the main thread starts helper threads for each scavenge and waits
 * until every helper it started has finished. On a host whose cores are busy with other work (a
 * small VPS, an office box, a shared 2-core CI machine) a helper that is not scheduled holds the
 * whole pause, and with it every connection the process carries. Measured on the expose bench
 * (bench/mediation.ts, 256 HTTP connections) on a shared 2-core host: the relay's scavenges took
 * up to 45-165 ms (160-420 ms in total over 7 s); on the main thread alone, up to 14-20 ms
 * (55-70 ms in total). A relay's or contact point's young generation holds little that survives
 * (buffers in flight, a few objects per connection), so one thread scavenges it in about a
 * millisecond: parallel scavenging has little to save there.
 *
 * Why sweeping: a stream carried through the relay (bench mediation-bulk, 512 MiB at 400-500 MB/s
 * on the 2-core host, where relay, contact point and the streams' ends all run) allocates a buffer
 * for every read, and with sweeping left to helper threads that the busy cores did not run
 * promptly V8 kept starting the next old-generation collection before the last one's sweeping was
 * done: 170-180 mark-compacts in the relay and contact point over the four streams (pauses p50
 * 4.6 ms, p90 10 ms), each with its concurrent marking besides. Swept on the main thread: 37-66
 * (p50 2.9, p90 5.7 ms), the CPU per MB fell by a fifth to a third and the streams ran 10-40 %
 * faster; the message path did not change (bench throughput, latency). Such a process's old
 * generation is small (about 10 MiB), so sweeping it is a millisecond or two.
 *
 * Each flag is left alone when the operator chose it on node's command line (`node
 * --parallel-scavenge dist/cli.js ...`: their choice wins; node does not take these in
 * NODE_OPTIONS), and all of them with `--single-threaded-gc`. Nothing the second time. V8 reads
 * these three for each collection, so setting them at run time is safe; flags that V8 or its C++
 * heap read once at start (`--single-threaded-gc`, `--no-parallel-marking`) are not, and only work
 * on node's command line.
 */
let done = false;

/** The V8 flags gcOnMainThread() sets, each with the pattern of a command-line flag that chooses it instead. */
const MAIN_THREAD_GC_FLAGS: readonly { flag: string; chosenBy: RegExp }[] = [
  { flag: '--no-parallel-scavenge', chosenBy: /^--(no-)?parallel[-_]scavenge$/ },
  { flag: '--no-concurrent-sweeping', chosenBy: /^--(no-)?concurrent[-_]sweeping$/ },
  { flag: '--no-concurrent-array-buffer-sweeping', chosenBy: /^--(no-)?concurrent[-_]array[-_]buffer[-_]sweeping$/ },
];
const SINGLE_THREADED = /^--(no-)?single[-_]threaded([-_]gc)?$/;

/**
 * Which of gcOnMainThread()'s flags to set, given node's own arguments: each one unless the command
 * line chose it (`left`, named without `--no-`), none with `--single-threaded-gc` (`single`).
 */
export function mainThreadGcPlan(execArgv: readonly string[]): { set: string[]; left: string[]; single: boolean } {
  const names = execArgv.map((f) => f.split('=')[0]!);
  const single = names.some((n) => SINGLE_THREADED.test(n));
  const set: string[] = [];
  const left: string[] = [];
  for (const { flag, chosenBy } of MAIN_THREAD_GC_FLAGS) {
    if (single || names.some((n) => chosenBy.test(n))) left.push(flag.replace(/^--no-/, ''));
    else set.push(flag);
  }
  return { set, left, single };
}

/**
 * Call once at the start of a process that forwards traffic (relay, contact point). Returns what
 * it did, for the process's startup log: the flags it set, and those it left to the command line.
 */
export function gcOnMainThread(execArgv: readonly string[] = process.execArgv): string {
  if (done) return 'already set';
  done = true;
  const { set, left } = mainThreadGcPlan(execArgv);
  for (const flag of set) setFlagsFromString(flag);
  if (set.length === 0) return 'skipped: chosen on the command line';
  return `set ${set.join(' ')}` + (left.length ? `; left to the command line: ${left.join(', ')}` : '');
}

/**
 * Keeps V8's young generation at its initial size (1 MiB a semi-space) for the life of the
 * process, as `node --semi-space-growth-factor=1` would; node lets it grow to 16 MiB.
 *
 * Why: V8 starts marking the old generation (then a mark-compact) whenever the room left below
 * the old generation's limit is less than the young generation's capacity. A relay or contact
 * point has a small old generation (about 10 MiB: its limit is then about 25 MiB), so once its
 * young generation had grown to 8 MiB a semi-space (16 MiB in all), it ran a mark-compact every
 * 200-400 ms under traffic: at 40,000-70,000 acked 1 KiB messages a second, one every
 * 7,000-15,000 messages in each of relay and contact point, each 5-15 ms of main-thread pauses
 * (marking threads besides), on every hop a message crosses. With the young generation kept at
 * 1 MiB a semi-space none ran in the contact point and the office's relay node in the same runs,
 * and their CPU per message fell by about a third; the scavenges come more often and stay short,
 * since little of what such a process allocates survives (bench cluster-messages). The node that
 * forwards a sender's sealed bundles (~55 KiB frames) to another node still runs one about every
 * 8,000 messages, started by its allocation limit: not explained yet.
 *
 * The young generation grows while the process loads its modules, and V8 does not shrink it
 * again on request: so this must run first of all (bin/contact-point.js calls it before it loads
 * the CLI). It does nothing when the operator chose the young generation's size on node's command
 * line (`node --max-semi-space-size=16 bin/contact-point.js ...`; also NODE_OPTIONS
 * `--max-semi-space-size`), and nothing the second time.
 */
let youngKept: string | undefined;

/** Whether `flags` (node's own arguments, and NODE_OPTIONS) already choose the young generation's size. */
export function youngSizeChosen(flags: readonly string[]): boolean {
  return flags.some((f) => /^--(max[-_]semi[-_]space[-_]size|min[-_]semi[-_]space[-_]size|semi[-_]space[-_]growth[-_]factor)$/.test(f.split('=')[0]!));
}

/** Call first of all in a process that forwards traffic; returns what it did (then and on later calls), for the startup log. */
export function keepYoungGenerationSmall(execArgv: readonly string[] = process.execArgv, nodeOptions: string = process.env.NODE_OPTIONS ?? ''): string {
  if (youngKept !== undefined) return youngKept;
  if (youngSizeChosen([...execArgv, ...nodeOptions.split(/\s+/)])) return (youngKept = 'young generation size: chosen on the command line');
  setFlagsFromString('--semi-space-growth-factor=1');
  return (youngKept = 'young generation kept at its initial size');
}

/** What keepYoungGenerationSmall() did in this process, if it ran. */
export function youngGenerationSetting(): string {
  return youngKept ?? 'node default (not set at start)';
}
