/**
 * How an audit entry reads for a person, shared by `contact-point audit` and the GUI's Audit
 * view and peer page. Plain TypeScript, no Node imports (the renderer imports it).
 */
import type { AdminSurface, AuditAction, AuditEntry, AuditValue } from './contract.js';

export const SURFACE_LABEL: Readonly<Record<AdminSurface, string>> = { gui: 'GUI', cli: 'CLI', api: 'API' };

const VERB: Readonly<Record<AuditAction, string>> = {
  'peer:approve': 'approved',
  'peer:reject': 'rejected',
  'peer:revoke': 'revoked',
  'peer:forget': 'forgot',
  'policy:set': 'set the registration policy',
  'ports:policy': 'set the port policy',
  'ports:close': 'closed',
  'settings:save': 'changed the settings',
  'history:retention': 'set the history retention',
  'seal:policy': 'set the sealed-payload policy',
  'rules:set': 'set the access rules of',
  'rules:check': 'set the content check',
};

/** `approved printer`, `closed port 7`, `set the port policy`. */
export function auditWhat(e: AuditEntry): string {
  const verb = VERB[e.action];
  return e.action.startsWith('peer:') || e.action === 'ports:close' || e.action === 'rules:set' ? `${verb} ${e.target}` : verb;
}

function valueText(v: string | number | boolean | readonly string[]): string {
  if (Array.isArray(v)) return v.length > 0 ? v.join(' ') : 'none';
  return String(v as string | number | boolean);
}

/**
 * The change as `field: before → after` for each field that differs (a field only on one side
 * shows `-` on the other); `state: pending → registered`. A removed thing reads `removed`.
 */
export function auditChange(before: AuditValue, after: AuditValue): string {
  if (after === null && before !== null) return `removed (was ${Object.entries(before).map(([k, v]) => `${k} ${valueText(v)}`).join(', ')})`;
  const b = before ?? {};
  const a = after ?? {};
  const keys = [...new Set([...Object.keys(b), ...Object.keys(a)])];
  const parts: string[] = [];
  for (const k of keys) {
    const x = b[k] !== undefined ? valueText(b[k]) : '-';
    const y = a[k] !== undefined ? valueText(a[k]) : '-';
    if (x !== y) parts.push(`${k}: ${x} → ${y}`);
  }
  return parts.length > 0 ? parts.join('; ') : 'no change';
}
