/**
 * The history's export formats (CSV and JSON lines), one definition for the CLI
 * (`contact-point history --export`) and the GUI's download: both page through history:query
 * with exportHistory() and write these lines. Pure TypeScript: the renderer imports it.
 */
import { statusName } from '../protocol/status.js';
import { MAX_HISTORY_PAGE, type AdminApi, type AdminParams, type HistoryEntry } from './contract.js';

/** The history's limits and outcomes, for the GUI (which takes only types from the contract). */
export { HISTORY_OUTCOMES, MAX_HISTORY_DAYS, MAX_HISTORY_ENTRIES } from './contract.js';

export const HISTORY_EXPORT_FORMATS = ['csv', 'jsonl'] as const;
export type HistoryExportFormat = (typeof HISTORY_EXPORT_FORMATS)[number];

/** CSV columns, in order: `time` is ISO 8601 UTC, `at` the same in ms; `status` the code's name (OK when delivered). */
export const HISTORY_CSV_COLUMNS = ['seq', 'time', 'at', 'outcome', 'dir', 'from', 'to', 'size', 'code', 'status', 'reason', 'id'] as const;

/** A history:query filter without the paging fields. */
export type HistoryExportFilter = Omit<AdminParams<'history:query'>, 'before' | 'limit'>;

/**
 * One CSV field (RFC 4180 quoting). A text that a spreadsheet would run as a formula (= + - @
 * first) gets a leading ' : reasons come from other parties and an export is opened in one.
 */
function csvField(v: string | number): string {
  let s = String(v);
  if (typeof v === 'string' && /^[=+\-@\t\r]/.test(s)) s = `'${s}`;
  return /[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}

/** What goes before the first entry: the CSV header line; nothing for JSON lines. */
export function historyExportHeader(format: HistoryExportFormat): string {
  return format === 'csv' ? `${HISTORY_CSV_COLUMNS.join(',')}\r\n` : '';
}

/** One entry as a line of `format`, with its line ending. */
export function historyExportLine(e: HistoryEntry, format: HistoryExportFormat): string {
  const status = statusName(e.code);
  if (format === 'jsonl') return `${JSON.stringify({ ...e, time: new Date(e.at).toISOString(), status })}\n`;
  const row: Record<(typeof HISTORY_CSV_COLUMNS)[number], string | number> = {
    seq: e.seq,
    time: new Date(e.at).toISOString(),
    at: e.at,
    outcome: e.outcome,
    dir: e.dir,
    from: e.from,
    to: e.to,
    size: e.size,
    code: e.code,
    status,
    reason: e.reason,
    id: e.id,
  };
  return `${HISTORY_CSV_COLUMNS.map((c) => csvField(row[c])).join(',')}\r\n`;
}

/**
 * Every entry matching `filter`, newest first, as chunks of export text and how many entries
 * each holds (the header first, 0): pages through history:query by its cursor, so entries
 * recorded meanwhile are not repeated.
 */
export async function* exportHistory(
  api: Pick<AdminApi, 'call'>,
  filter: HistoryExportFilter,
  format: HistoryExportFormat,
): AsyncGenerator<{ readonly text: string; readonly entries: number }> {
  yield { text: historyExportHeader(format), entries: 0 };
  let before: number | undefined;
  for (;;) {
    const page = await api.call('history:query', { ...filter, limit: MAX_HISTORY_PAGE, ...(before !== undefined ? { before } : {}) });
    if (page.entries.length > 0) yield { text: page.entries.map((e) => historyExportLine(e, format)).join(''), entries: page.entries.length };
    if (page.next === undefined) return;
    before = page.next;
  }
}
