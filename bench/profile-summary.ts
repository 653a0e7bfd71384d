/**
 * Summarises V8 .cpuprofile files (from `npm run bench -- --cpu-prof`): the functions with the
 * most self time, and the most inclusive time, per profile.
 *
 *   node dist/bench/profile-summary.js DIR|FILE... [--top N] [--timeline] [--from S --to S | --busiest S]
 *
 * A worker's profile covers its whole life, of which one round is a few seconds: `--timeline`
 * prints how busy the process was in each second (from the profile's start), `--from`/`--to`
 * keep the samples between two of those seconds, `--busiest S` the busiest S seconds.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, join, relative } from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

function label(n: ProfileNode): string {
  const f = n.callFrame;
  const url = f.url.replace(/^file:\/\//, '');
  const where = url ? `${url.includes('node_modules') ? url.slice(url.indexOf('node_modules')) : relative(process.cwd(), url)}:${f.lineNumber + 1}` : '';
  return `${f.functionName || '(anonymous)'} ${where}`.trim();
}

interface Options {
  top: number;
  timeline: boolean;
  /** seconds from the profile's start */
  from?: number;
  to?: number;
  busiest?: number;
}

/** Each sample's time in seconds from the profile's start. */
function sampleTimes(p: Profile): number[] {
  const at: number[] = [];
  let t = 0;
  for (const d of p.timeDeltas) at.push((t += d) / 1e6);
  return at;
}

/** The [from, to) seconds of the `span` seconds with the most non-idle samples. */
function busiestWindow(at: readonly number[], busy: readonly boolean[], span: number): [number, number] {
  let best = 0;
  let bestFrom = 0;
  let count = 0;
  for (let i = 0, j = 0; i < at.length; i++) {
    if (busy[i]) count++;
    while (at[i]! - at[j]! > span) if (busy[j++]) count--;
    if (count > best) {
      best = count;
      bestFrom = at[j]!;
    }
  }
  return [bestFrom, bestFrom + span];
}

function summarise(file: string, o: Options): void {
  const p = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const at = sampleTimes(p);
  const busy = p.samples.map((id) => byId.get(id)?.callFrame.functionName !== '(idle)');
  if (o.timeline) {
    const perSecond: [number, number][] = [];
    at.forEach((t, i) => {
      const s = (perSecond[Math.floor(t)] ??= [0, 0]);
      s[1]++;
      if (busy[i]) s[0]++;
    });
    const cells = [...perSecond.entries()].map(([sec, c]) => `${sec}s ${c ? Math.round((100 * c[0]) / c[1]) : 0}%`);
    process.stdout.write(`\n== ${basename(file)}: busy per second\n${cells.join('  ')}\n`);
  }
  const [from, to] = o.busiest !== undefined ? busiestWindow(at, busy, o.busiest) : [o.from ?? 0, o.to ?? Infinity];
  const selfUs = new Map<number, number>();
  for (let i = 0; i < p.samples.length; i++) {
    if (at[i]! < from || at[i]! >= to) continue;
    const id = p.samples[i]!;
    selfUs.set(id, (selfUs.get(id) ?? 0) + (p.timeDeltas[i] ?? 0));
  }
  const total = [...selfUs.values()].reduce((a, b) => a + b, 0);
  const self = new Map<string, number>();
  const incl = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const n = byId.get(id)!;
    self.set(label(n), (self.get(label(n)) ?? 0) + us);
    // Inclusive: each distinct label on the stack once.
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const l = label(byId.get(cur)!);
      if (seen.has(l)) continue;
      seen.add(l);
      incl.set(l, (incl.get(l) ?? 0) + us);
    }
  }
  if (total === 0) {
    process.stdout.write(`\n== ${basename(file)}: no samples between ${from} and ${to} s\n`);
    return;
  }
  const idle = self.get('(idle)') ?? 0;
  const pct = (us: number): string => `${((us / total) * 100).toFixed(1).padStart(5)}%`;
  const span = from > 0 || to < Infinity ? ` (${from.toFixed(1)}-${Number.isFinite(to) ? to.toFixed(1) : 'end'} s)` : '';
  process.stdout.write(`\n== ${basename(file)}${span}: ${(total / 1e6).toFixed(2)} s sampled, ${pct(total - idle)} busy\n-- self\n`);
  for (const [l, us] of [...self].sort((a, b) => b[1] - a[1]).slice(0, o.top)) process.stdout.write(`${pct(us)}  ${l}\n`);
  process.stdout.write('-- inclusive\n');
  for (const [l, us] of [...incl].sort((a, b) => b[1] - a[1]).slice(0, o.top)) process.stdout.write(`${pct(us)}  ${l}\n`);
}

const USAGE = 'usage: node dist/bench/profile-summary.js DIR|FILE... [--top N] [--timeline] [--from S --to S | --busiest S]\n';

/** The number after a flag; exits with the usage when it is not one. */
function numberAfter(flag: string, value: string | undefined): number {
  const n = Number(value);
  if (value === undefined || !Number.isFinite(n) || n < 0) {
    process.stderr.write(`${flag} takes a number of seconds (or, for --top, of lines), not ${value === undefined ? 'nothing' : `"${value}"`}\n${USAGE}`);
    process.exit(2);
  }
  return n;
}

// Piped into `head`: stop quietly once the reader has gone.
process.stdout.on('error', (err: NodeJS.ErrnoException) => process.exit(err.code === 'EPIPE' ? 0 : 1));

const args = process.argv.slice(2);
const options: Options = { top: 25, timeline: false };
const files: string[] = [];
for (let i = 0; i < args.length; i++) {
  const flag = args[i]!; // an option, or a profile file or folder
  if (flag === '--top') options.top = numberAfter(flag, args[++i]);
  else if (flag === '--timeline') options.timeline = true;
  else if (flag === '--from') options.from = numberAfter(flag, args[++i]);
  else if (flag === '--to') options.to = numberAfter(flag, args[++i]);
  else if (flag === '--busiest') {
    options.busiest = numberAfter(flag, args[++i]);
    if (options.busiest === 0) {
      process.stderr.write(`--busiest takes a window longer than 0 s\n${USAGE}`);
      process.exit(2);
    }
  }
  else if (flag.startsWith('--')) {
    process.stderr.write(`unknown option ${flag}\n${USAGE}`);
    process.exit(2);
  } else if (statSync(flag).isDirectory()) {
    for (const f of readdirSync(flag).sort()) if (f.endsWith('.cpuprofile')) files.push(join(flag, f));
  } else {
    files.push(flag);
  }
}
if (files.length === 0) {
  process.stderr.write(USAGE);
  process.exit(2);
}
if (options.busiest !== undefined && (options.from !== undefined || options.to !== undefined)) {
  process.stderr.write(`--busiest picks its own window: not with --from or --to\n${USAGE}`);
  process.exit(2);
}
for (const f of files) summarise(f, options);
