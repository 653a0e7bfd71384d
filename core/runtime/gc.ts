import { setFlagsFromString } from 'node:v8';

/**
 * Makes V8 collect the young generation (scavenges: many per second under traffic) on the main
 * thread alone, as `node --no-parallel-scavenge` would.
 *
 * Why: by default the main thread starts helper threads for each scavenge and waits until every
 * helper it started has finished. On a host whose cores are busy with other work (a small VPS,
 * an office box, a shared 2-core CI machine) a helper that is not scheduled holds the whole
 * pause, and with it every connection the process carries. Measured on the expose bench
 * (bench/mediation.ts, 256 HTTP connections) on a shared 2-core host: the relay's scavenges took
 * up to 45-165 ms (160-420 ms in total over 7 s); on the main thread alone, up to 14-20 ms
 * (55-70 ms in total). A relay's or contact point's young generation holds little that survives
 * (buffers in flight, a few objects per connection), so one thread scavenges it in about a
 * millisecond: parallel scavenging has little to save there. Old-generation marking stays
 * concurrent.
 *
 * It does nothing when the operator chose a scavenging or GC threading mode on node's command line
 * (`node --parallel-scavenge dist/cli.js ...`: their choice wins; node does not take V8 flags in
 * NODE_OPTIONS), and nothing the second time.
 */
let done = false;

/** Whether `flags` (node's own arguments) already choose how V8 scavenges. */
export function gcModeChosen(flags: readonly string[]): boolean {
  return flags.some((f) => /^--(no-)?(parallel[-_]scavenge|single[-_]threaded[-_]gc|single[-_]threaded)$/.test(f.split('=')[0]!));
}

/**
 * Call once at the start of a process that forwards traffic (relay, contact point). Returns what
 * it did, for the process's startup log.
 */
export function serialScavenges(execArgv: readonly string[] = process.execArgv): 'serial scavenges' | 'already set' | 'skipped: chosen on the command line' {
  if (done) return 'already set';
  if (gcModeChosen(execArgv)) return 'skipped: chosen on the command line';
  done = true;
  setFlagsFromString('--no-parallel-scavenge');
  return 'serial scavenges';
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
