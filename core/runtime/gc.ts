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
