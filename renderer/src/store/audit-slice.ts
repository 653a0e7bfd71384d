import type { AuditEntry } from '../../../core/admin/contract.js';
import type { AppStore } from './app-store';

/** Audit entries the GUI keeps (newest first); older ones are fetched a page at a time. */
export const MAX_AUDIT_ROWS = 2_000;
/** Entries one page of the Audit view asks for. */
export const AUDIT_PAGE = 100;

/** The audit trail of admin decisions, as far as the GUI has loaded it. */
export interface AuditSlice {
  /** newest first, by seq, at most MAX_AUDIT_ROWS */
  readonly audit: readonly AuditEntry[];
  /** whether older entries exist at the contact point than the last loaded */
  readonly auditMore: boolean;
  /** a page is being fetched */
  readonly auditLoading: boolean;
}

export function initialAudit(): AuditSlice {
  return { audit: [], auditMore: false, auditLoading: false };
}

/** A page from audit:list; `older` appends it below what is there, else it replaces everything (a fresh load). */
export function loadAudit(store: AppStore, entries: readonly AuditEntry[], more: boolean, older: boolean): void {
  store.setState((s) => {
    const merged = older ? mergeAudit(s.audit, entries) : [...entries];
    return { audit: merged.slice(0, MAX_AUDIT_ROWS), auditMore: more || merged.length > MAX_AUDIT_ROWS, auditLoading: false };
  });
}

export function setAuditLoading(store: AppStore, loading: boolean): void {
  store.setState({ auditLoading: loading });
}

/** A live audit:entry event. */
export function auditEntry(store: AppStore, entry: AuditEntry): void {
  store.setState((s) => {
    const merged = mergeAudit(s.audit, [entry]);
    return { audit: merged.slice(0, MAX_AUDIT_ROWS), auditMore: s.auditMore || merged.length > MAX_AUDIT_ROWS };
  });
}

/** Two lists of entries as one, newest first, each seq once. */
export function mergeAudit(a: readonly AuditEntry[], b: readonly AuditEntry[]): AuditEntry[] {
  const bySeq = new Map<number, AuditEntry>();
  for (const e of a) bySeq.set(e.seq, e);
  for (const e of b) bySeq.set(e.seq, e);
  return [...bySeq.values()].sort((x, y) => y.seq - x.seq);
}
