import { createWriteStream } from 'node:fs';
import { finished } from 'node:stream/promises';
import { HISTORY_OUTCOMES, MAX_HISTORY_DAYS, MAX_HISTORY_ENTRIES, MAX_HISTORY_PAGE, type AdminParams, type HistoryPage, type HistoryRetention } from '../admin/contract.js';
import { exportHistory, HISTORY_EXPORT_FORMATS, type HistoryExportFilter } from '../admin/history-export.js';
import { countFlag, integer, oneOf, parseFlags, type Command } from './args.js';
import { CONNECTION_FLAGS, connectionOptions, withAdmin } from './admin-commands.js';
import { UsageError } from './errors.js';
import { formatBytes } from './ports-command.js';
import { formatTable, note, say } from './output.js';

/** Entries `contact-point history` lists unless --limit says otherwise. */
export const DEFAULT_HISTORY_LIST = 50;

const UNITS: Record<string, number> = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** --since/--until: an ISO date or time (2026-12-01, 2026-12-01T09:30Z) or an age (30m, 2h, 7d). */
export function timeFlag(flag: string, value: string, now: number): number {
  const age = /^(\d{1,6})([smhd])$/.exec(value);
  if (age) return now - Number(age[1]) * UNITS[age[2]!]!;
  const t = /^\d{4}-\d{2}-\d{2}/.test(value) ? Date.parse(value) : NaN;
  if (!Number.isFinite(t)) throw new UsageError(`${flag} "${value}": expected an ISO date or time (2026-12-01, 2026-12-01T09:30:00Z) or an age (30m, 2h, 7d)`);
  return t;
}

const FILTER_FLAGS = `  --peer P         entries from or to P: a whole address (printer@acme-hq), or a part of one
  --sender S       entries from S (same matching)
  --outcome O      ${HISTORY_OUTCOMES.join(', ')}
  --reason R       a status name (PEER_OFFLINE) or a part of the reason text
  --since T        from T on: an ISO date or time (2026-12-01T09:30Z) or an age (30m, 2h, 7d)
  --until T        up to T (same forms)`;

const HISTORY_HELP = `Usage: contact-point history [filters] [--limit N] [--before SEQ] [--json]
       contact-point history [filters] --export csv|jsonl [--output FILE]

The contact point's history: every message's metadata and outcome (never its payload), every
refusal with its reason, and every mediated port's opening and closing, newest first. It is
kept on disk in <state>/history and survives restarts; see \`history retention\` for how much.

Without --export: one page (--limit, default ${DEFAULT_HISTORY_LIST}, at most ${MAX_HISTORY_PAGE}); the last line
says how to get the next, older one (--before SEQ). With --export: every matching entry, as
CSV (header line, RFC 4180) or JSON lines, to stdout or --output FILE.

Filters:
${FILTER_FLAGS}

Flags:
  --limit N        entries on the page (default ${DEFAULT_HISTORY_LIST})
  --before SEQ     only entries older than SEQ (the cursor the previous page printed)
  --export FORMAT  csv or jsonl: everything that matches
  --output FILE    write the export to FILE instead of stdout
${CONNECTION_FLAGS}

Examples:
  contact-point history --outcome refused --since 1h
  contact-point history --peer printer@acme-hq --export csv --output printer.csv
`;

const filterOptions = {
  peer: { type: 'string' },
  sender: { type: 'string' },
  outcome: { type: 'string' },
  reason: { type: 'string' },
  since: { type: 'string' },
  until: { type: 'string' },
} as const;

function filterFrom(values: { [K in keyof typeof filterOptions]?: string | undefined }, now: number): HistoryExportFilter {
  const f: { -readonly [K in keyof HistoryExportFilter]: HistoryExportFilter[K] } = {};
  if (values.peer !== undefined) f.peer = values.peer;
  if (values.sender !== undefined) f.sender = values.sender;
  if (values.outcome !== undefined) f.outcome = oneOf('--outcome', values.outcome, HISTORY_OUTCOMES);
  if (values.reason !== undefined) f.reason = values.reason;
  if (values.since !== undefined) f.since = timeFlag('--since', values.since, now);
  if (values.until !== undefined) f.until = timeFlag('--until', values.until, now);
  return f;
}

function pageText(page: HistoryPage): string[] {
  if (!page.enabled) return ['this contact point keeps no history (it runs without a state folder)'];
  const rows = page.entries.map((e) => [
    String(e.seq),
    new Date(e.at).toISOString().replace('T', ' ').slice(0, 23),
    e.outcome,
    e.dir,
    e.from,
    e.to,
    formatBytes(e.size),
    e.reason,
  ]);
  const lines = rows.length > 0 ? [formatTable(['SEQ', 'TIME (UTC)', 'OUTCOME', 'DIR', 'FROM', 'TO', 'SIZE', 'REASON'], rows)] : ['no entries match'];
  const c = page.counts;
  lines.push(
    `${page.entries.length} shown of ${page.matched} matching (${c.delivered} delivered, ${c.refused} refused, ${c.forwarded} forwarded, ${c.opened + c.closed} port events)` +
      (page.next !== undefined ? `; older: --before ${page.next}` : ''),
  );
  return lines;
}

async function historyList(argv: string[]): Promise<number> {
  const { values } = parseFlags({
    args: argv,
    strict: true,
    options: { ...connectionOptions, ...filterOptions, limit: { type: 'string' }, before: { type: 'string' }, export: { type: 'string' }, output: { type: 'string' } },
  });
  const filter = filterFrom(values, Date.now());
  if (values.export !== undefined) {
    const format = oneOf('--export', values.export, HISTORY_EXPORT_FORMATS);
    if (values.limit !== undefined || values.before !== undefined) throw new UsageError('--export writes every matching entry: --limit and --before do not apply');
    const out = values.output !== undefined ? createWriteStream(values.output, { mode: 0o600 }) : undefined;
    let entries = 0;
    await withAdmin(values, async (c) => {
      for await (const chunk of exportHistory(c, filter, format)) {
        const sink: NodeJS.WritableStream = out ?? process.stdout;
        if (!sink.write(chunk.text)) await new Promise<void>((r) => sink.once('drain', () => r()));
        entries += chunk.entries;
      }
    });
    if (out) {
      out.end();
      await finished(out);
      note(`wrote ${entries} entries to ${values.output}`);
    }
    return 0;
  }
  if (values.output !== undefined) throw new UsageError('--output goes with --export');
  const params: AdminParams<'history:query'> = {
    ...filter,
    limit: countFlag('--limit', values.limit, MAX_HISTORY_PAGE) ?? DEFAULT_HISTORY_LIST,
    ...(values.before !== undefined ? { before: integer('--before', values.before, 1, Number.MAX_SAFE_INTEGER) } : {}),
  };
  const page = await withAdmin(values, (c) => c.call('history:query', params));
  if (values.json) say(JSON.stringify(page));
  else for (const line of pageText(page)) say(line);
  return 0;
}

const RETENTION_HELP = `Usage: contact-point history retention [--entries N] [--days D] [--json]

Shows, or with a flag sets, how much history the contact point keeps: at least the newest N
entries (default 100,000, at most ${MAX_HISTORY_ENTRIES.toLocaleString('en-US')}); with --days, entries older than D days go
too (0: no age limit, the default). Whole segment files are dropped, oldest first. The
setting is saved in the state folder; serve/start --history-entries/--history-days replace it.

Flags:
  --entries N      keep at least the newest N entries
  --days D         drop entries older than D days (0 to ${MAX_HISTORY_DAYS}; 0: no age limit)
${CONNECTION_FLAGS}
`;

function retentionText(r: HistoryRetention, stored?: HistoryPage['stored']): string {
  const keep = `keeps at least the newest ${r.entries} entries${r.days > 0 ? `; entries older than ${r.days} days are dropped` : '; no age limit'}`;
  if (!stored) return keep;
  return `${keep}\nstored: ${stored.entries} entries, ${formatBytes(stored.bytes)} in ${stored.segments} segment files${stored.oldestAt !== undefined ? `, oldest ${new Date(stored.oldestAt).toISOString()}` : ''}`;
}

async function historyRetention(argv: string[]): Promise<number> {
  const { values } = parseFlags({ args: argv, strict: true, options: { ...connectionOptions, entries: { type: 'string' }, days: { type: 'string' } } });
  const entries = countFlag('--entries', values.entries, MAX_HISTORY_ENTRIES);
  const days = values.days !== undefined ? integer('--days', values.days, 0, MAX_HISTORY_DAYS) : undefined;
  const result = await withAdmin(values, async (c) => {
    const page = await c.call('history:query', { limit: 1 });
    if (entries === undefined && days === undefined) return { retention: page.retention, stored: page.stored };
    const retention = await c.call('history:retention', { entries: entries ?? page.retention.entries, days: days ?? page.retention.days });
    return { retention, stored: (await c.call('history:query', { limit: 1 })).stored };
  });
  say(values.json ? JSON.stringify(result) : retentionText(result.retention, result.stored));
  return 0;
}

export const historyCommands: Command[] = [
  { path: ['history'], summary: 'stored messages, refusals and port events: filter, page, export', help: HISTORY_HELP, run: historyList },
  { path: ['history', 'retention'], summary: 'how much history is kept (show or set)', help: RETENTION_HELP, run: historyRetention },
];
