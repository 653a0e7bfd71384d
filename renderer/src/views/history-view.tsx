import { useCallback, useEffect, useState, type FormEvent } from 'react';
import type { HistoryEntry, HistoryOutcome, HistoryPage } from '../../../core/admin/contract.js';
import {
  exportHistory,
  HISTORY_OUTCOMES,
  MAX_HISTORY_DAYS,
  MAX_HISTORY_ENTRIES,
  type HistoryExportFilter,
  type HistoryExportFormat,
} from '../../../core/admin/history-export.js';
import { errorText } from '../api/admin-call-error';
import { FLOW_ROW_HEIGHT, FlowHeaderRow, FlowRowCells } from '../components/flow-row';
import { VirtualList } from '../components/virtual-list';
import { formatBytes, formatCount, formatDateTime, formatTimestamp } from '../format/units';
import { useCtx } from '../store/context';
import { notify } from '../store/session-slice';

/** Entries fetched per page while the admin scrolls back. */
export const HISTORY_GUI_PAGE = 200;

interface FilterForm {
  readonly peer: string;
  readonly sender: string;
  readonly outcome: HistoryOutcome | 'all';
  readonly reason: string;
  /** datetime-local values (local time), '' for none */
  readonly since: string;
  readonly until: string;
}
const EMPTY_FORM: FilterForm = { peer: '', sender: '', outcome: 'all', reason: '', since: '', until: '' };

function toFilter(f: FilterForm): HistoryExportFilter {
  const time = (v: string): number | undefined => (v ? new Date(v).getTime() : undefined);
  const since = time(f.since);
  const until = time(f.until);
  const peer = f.peer.trim();
  return {
    ...(peer ? { peer } : {}),
    ...(f.sender.trim() ? { sender: f.sender.trim() } : {}),
    ...(f.outcome !== 'all' ? { outcome: f.outcome } : {}),
    ...(f.reason.trim() ? { reason: f.reason.trim() } : {}),
    ...(since !== undefined && Number.isFinite(since) ? { since } : {}),
    ...(until !== undefined && Number.isFinite(until) ? { until } : {}),
  };
}

/**
 * The stored history (issue 16): what the contact point kept on disk, across reloads and
 * restarts, newest first, with filters, paging back and export.
 */
export function HistoryPanel() {
  const ctx = useCtx();
  const [form, setForm] = useState<FilterForm>(EMPTY_FORM);
  const [filter, setFilter] = useState<HistoryExportFilter>(() => toFilter(EMPTY_FORM));
  const [entries, setEntries] = useState<readonly HistoryEntry[]>([]);
  const [page, setPage] = useState<HistoryPage | undefined>();
  const [busy, setBusy] = useState(false);
  const [exporting, setExporting] = useState<HistoryExportFormat | undefined>();

  const load = useCallback(
    async (before: number | undefined) => {
      setBusy(true);
      try {
        const p = await ctx.api.call('history:query', { ...filter, limit: HISTORY_GUI_PAGE, ...(before !== undefined ? { before } : {}) });
        setPage(p);
        setEntries((old) => (before === undefined ? p.entries : [...old, ...p.entries]));
      } catch (err: unknown) {
        notify(ctx.store, 'error', `Could not load the history: ${errorText(err)}`);
      } finally {
        setBusy(false);
      }
    },
    [ctx, filter],
  );

  useEffect(() => {
    void load(undefined);
  }, [load]);

  const set = (patch: Partial<FilterForm>): void => setForm((f) => ({ ...f, ...patch }));
  const apply = (e: FormEvent): void => {
    e.preventDefault();
    setFilter(toFilter(form));
  };
  const reset = (): void => {
    setForm(EMPTY_FORM);
    setFilter(toFilter(EMPTY_FORM));
  };

  const download = async (format: HistoryExportFormat): Promise<void> => {
    setExporting(format);
    try {
      const parts: string[] = [];
      let n = 0;
      for await (const chunk of exportHistory(ctx.api, filter, format)) {
        parts.push(chunk.text);
        n += chunk.entries;
      }
      const blob = new Blob(parts, { type: format === 'csv' ? 'text/csv' : 'application/x-ndjson' });
      const url = URL.createObjectURL(blob);
      const a = document.createElement('a');
      a.href = url;
      a.download = `contact-point-history-${new Date().toISOString().slice(0, 19).replaceAll(':', '')}.${format}`;
      a.click();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
      notify(ctx.store, 'ok', `Exported ${formatCount(n)} entries as ${format === 'csv' ? 'CSV' : 'JSON lines'}`);
    } catch (err: unknown) {
      notify(ctx.store, 'error', `Export failed: ${errorText(err)}`);
    } finally {
      setExporting(undefined);
    }
  };

  const c = page?.counts;
  return (
    <>
      <form className="toolbar history-filters" role="search" aria-label="History filters" onSubmit={apply}>
        <label>
          Peer
          <input type="search" placeholder="address or part" value={form.peer} onChange={(e) => set({ peer: e.target.value })} />
        </label>
        <label>
          Sender
          <input type="search" placeholder="address or part" value={form.sender} onChange={(e) => set({ sender: e.target.value })} />
        </label>
        <label>
          Outcome
          <select value={form.outcome} onChange={(e) => set({ outcome: e.target.value as HistoryOutcome | 'all' })}>
            <option value="all">all</option>
            {HISTORY_OUTCOMES.map((o) => (
              <option key={o} value={o}>
                {o}
              </option>
            ))}
          </select>
        </label>
        <label>
          Reason
          <input type="search" placeholder="PEER_OFFLINE or text" value={form.reason} onChange={(e) => set({ reason: e.target.value })} />
        </label>
        <label>
          From
          <input type="datetime-local" value={form.since} onChange={(e) => set({ since: e.target.value })} />
        </label>
        <label>
          To
          <input type="datetime-local" value={form.until} onChange={(e) => set({ until: e.target.value })} />
        </label>
        <button type="submit" className="primary" disabled={busy}>
          Search
        </button>
        <button type="button" onClick={reset}>
          Reset
        </button>
      </form>

      <div className="toolbar history-summary">
        <span className="muted" aria-live="polite" data-testid="history-summary">
          {page === undefined
            ? 'Loading…'
            : !page.enabled
              ? 'This contact point keeps no history (it runs without a state folder).'
              : `${formatCount(page.matched)} matching: ${formatCount(c!.delivered)} delivered, ${formatCount(c!.refused)} refused, ${formatCount(c!.forwarded)} forwarded, ${formatCount(c!.opened + c!.closed)} port events. ` +
                `Showing the newest ${formatCount(entries.length)}.`}
        </span>
        <span className="history-export">
          <button type="button" disabled={exporting !== undefined || !page?.enabled} onClick={() => void download('csv')}>
            {exporting === 'csv' ? 'Exporting…' : 'Export CSV'}
          </button>
          <button type="button" disabled={exporting !== undefined || !page?.enabled} onClick={() => void download('jsonl')}>
            {exporting === 'jsonl' ? 'Exporting…' : 'Export JSON lines'}
          </button>
          <button type="button" disabled={busy} onClick={() => void load(undefined)}>
            Refresh
          </button>
        </span>
      </div>

      <div className="history-list">
        <VirtualList
          items={entries}
          rowHeight={FLOW_ROW_HEIGHT}
          itemKey={(e) => e.seq}
          label="History"
          header={<FlowHeaderRow />}
          empty={<p className="empty">{busy ? 'Loading…' : 'No stored entries match.'}</p>}
          renderRow={(e) => <FlowRowCells r={e} time={formatTimestamp} />}
        />
      </div>
      {page?.next !== undefined ? (
        <button type="button" className="history-older" disabled={busy} onClick={() => void load(page.next)}>
          Load older entries
        </button>
      ) : null}
      {page?.enabled ? <RetentionForm page={page} onSaved={() => void load(undefined)} /> : null}
    </>
  );
}

/** How much history is kept: shown, and set (saved in the contact point's state folder). */
function RetentionForm({ page, onSaved }: { page: HistoryPage; onSaved: () => void }) {
  const ctx = useCtx();
  const [entries, setEntries] = useState(String(page.retention.entries));
  const [days, setDays] = useState(String(page.retention.days));
  const [saving, setSaving] = useState(false);
  const s = page.stored;
  const save = async (e: FormEvent): Promise<void> => {
    e.preventDefault();
    const n = Number(entries);
    const d = Number(days);
    if (!Number.isInteger(n) || n < 1 || n > MAX_HISTORY_ENTRIES || !Number.isInteger(d) || d < 0 || d > MAX_HISTORY_DAYS) {
      notify(ctx.store, 'error', `Keep 1 to ${formatCount(MAX_HISTORY_ENTRIES)} entries and 0 to ${MAX_HISTORY_DAYS} days (0: no age limit)`);
      return;
    }
    setSaving(true);
    try {
      const r = await ctx.api.call('history:retention', { entries: n, days: d });
      notify(ctx.store, 'ok', `History keeps at least the newest ${formatCount(r.entries)} entries${r.days > 0 ? `, none older than ${r.days} days` : ''}`);
      onSaved();
    } catch (err: unknown) {
      notify(ctx.store, 'error', `Could not save the history setting: ${errorText(err)}`);
    } finally {
      setSaving(false);
    }
  };
  return (
    <details className="history-retention">
      <summary>
        Stored: {formatCount(s.entries)} entries, {formatBytes(s.bytes)} in {s.segments} {s.segments === 1 ? 'file' : 'files'}{s.oldestAt !== undefined ? `, since ${formatDateTime(s.oldestAt)}` : ''}
        {page.lost > 0 ? `; ${formatCount(page.lost)} lost (disk too slow or a write failed)` : ''}
      </summary>
      <form className="toolbar" onSubmit={(e) => void save(e)} aria-label="History retention">
        <label>
          Keep at least the newest
          <input type="number" min={1} max={MAX_HISTORY_ENTRIES} value={entries} onChange={(e) => setEntries(e.target.value)} />
          entries
        </label>
        <label>
          and drop entries older than
          <input type="number" min={0} max={MAX_HISTORY_DAYS} value={days} onChange={(e) => setDays(e.target.value)} />
          days (0: no age limit)
        </label>
        <button type="submit" disabled={saving}>
          Save
        </button>
      </form>
    </details>
  );
}
