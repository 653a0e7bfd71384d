/**
 * The content check's cost per message (issue 15: "benchmark the hook's cost per message (no
 * hook, an allow-all hook) in the same run").
 *
 * Acked 1 KiB messages external -> relay -> tunnel -> contact point -> internal peer (as
 * messages.throughput, closed loop), through ONE contact point whose content check is switched
 * between rounds: none (the baseline), an allow-all command (a real child process answering each
 * JSON line at once: the cost of the hook's protocol, pipes and queue, not of any inspection)
 * and the built-in json-depth check. Rounds rotate the order so drift on the shared host hits
 * every setting alike; the medians are reported, and the cost per message as the difference of
 * the time per message (1 / rate) against no check.
 */
import type { ContentCheckView } from '../core/admin/contract.js';
import { PeerClient } from '../core/peer/peer-client.js';
import type { BenchContext } from './context.js';
import type { WorkerHandle } from './ipc.js';
import { closedLoop, IN_FLIGHT, MSG_BYTES, payload, type LoopResult } from './messages.js';
import { emit, median, note, round } from './util.js';
import { startOfficePath } from './office-path.js';

/** An allow-all check command: reads JSON lines, answers each at once. */
const ALLOW_ALL = [
  process.execPath,
  '-e',
  "const rl=require('node:readline').createInterface({input:process.stdin});rl.on('line',(l)=>{const i=l.indexOf(',');process.stdout.write('{\"id\":'+l.slice(6,i)+',\"allow\":true}\\n')});rl.on('close',()=>process.exit(0))",
];

const SETTINGS: Record<'none' | 'allow_all_command' | 'json_depth', ContentCheckView> = {
  none: { kind: 'none' },
  allow_all_command: { kind: 'command', argv: ALLOW_ALL, timeoutMs: 5_000, failure: 'closed', concurrency: 64 },
  json_depth: { kind: 'json-depth', depth: 64 },
};
type Setting = keyof typeof SETTINGS;

export async function runContentCheck(ctx: BenchContext): Promise<void> {
  if (!ctx.selected('content-check')) return;
  const mode = ctx.quick ? 'quick' : 'full';
  const rounds = ctx.quick ? 2 : 3;
  const warm = ctx.quick ? 1_500 : 2_000;
  const window = ctx.quick ? 3_000 : 5_000;
  const workers: WorkerHandle[] = [];
  let sender: PeerClient | undefined;
  try {
    note('content-check: relay, one contact point (its check switched between rounds), a receiver worker');
    const { relay, cp, sink, to } = await startOfficePath(ctx, workers, { id: 'bench-check', receiver: 'sink' });
    const extSecret = await relay.call<string>('addCredential', { kind: 'external', id: 'bench-src' });
    sender = new PeerClient({ role: 'external', url: relay.url, name: 'bench-src', secret: extSecret, proxy: null });
    sender.start();
    await sender.ready();

    const names = Object.keys(SETTINGS) as Setting[];
    const results: Record<Setting, LoopResult[]> = { none: [], allow_all_command: [], json_depth: [] };
    for (let r = 0; r < rounds; r++) {
      const order = names.map((_, i) => names[(i + r) % names.length]!);
      for (const s of order) {
        await cp.call('setCheck', SETTINGS[s]);
        await sender.send(to, payload(false)); // the check is in place (a command has started) before the clock runs
        const c = await closedLoop(sender, to, warm, window, [relay, cp, sink]);
        results[s].push(c);
        note(`  round ${r + 1}: check ${s}: ${Math.round(c.msgsPerS)} msgs/s, contact point cpu ${c.cpu['contact-point']}%`);
      }
    }
    const rate = (s: Setting): number => median(results[s].map((c) => c.msgsPerS));
    const cpCpu = (s: Setting): number => median(results[s].map((c) => c.cpu['contact-point'] ?? 0));
    /** contact point CPU time per message, in µs */
    const cpuPerMsg = (s: Setting): number => (cpCpu(s) / 100) * (1e6 / rate(s));
    const costUs = (s: Setting): number => 1e6 / rate(s) - 1e6 / rate('none');
    for (const s of ['allow_all_command', 'json_depth'] as const) {
      emit({
        name: `content-check.${s}`,
        description: `contact point CPU time per acked ${MSG_BYTES} B message external -> relay -> contact point -> internal peer (${IN_FLIGHT} in flight), with the content check ${s === 'json_depth' ? 'built-in json-depth' : 'an allow-all command (child process, JSON lines)'} vs none (same contact point, same run, rounds rotating)`,
        value: round(cpuPerMsg(s), 2),
        unit: 'us cpu/msg',
        baseline_us_cpu_per_msg: round(cpuPerMsg('none'), 2),
        baseline: 'the same contact point with no content check',
        ratio: round(cpuPerMsg(s) / cpuPerMsg('none')),
        cp_cpu: 'the contact point process only (a check command is a process of its own, not counted); CPU per message holds up on a loaded host better than the rate',
        msgs_per_s: Math.round(rate(s)),
        msgs_per_s_none: Math.round(rate('none')),
        rate_ratio: round(rate(s) / rate('none')),
        cost_us_per_msg: round(costUs(s), 2),
        cost: 'time per acked message with the check minus without (1/rate), at this pipeline depth',
        rounds: results[s].map((c) => Math.round(c.msgsPerS)),
        rounds_none: results.none.map((c) => Math.round(c.msgsPerS)),
        failed: results[s].reduce((n, c) => n + c.failed, 0),
        host: results[s].map((c) => c.noise),
        warmup_s: warm / 1000,
        window_s: window / 1000,
        mode,
      });
    }
  } finally {
    await sender?.stop();
    await Promise.all(workers.map((w) => w.stop()));
  }
}
