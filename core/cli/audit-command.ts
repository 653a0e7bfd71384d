import { auditChange, auditWhat, SURFACE_LABEL } from '../admin/audit-text.js';
import type { AuditEntry } from '../admin/contract.js';
import { CONNECTION_FLAGS, connectionOptions, withAdmin } from './admin-commands.js';
import { countFlag, name, parseFlags, type Command } from './args.js';
import { formatTable, note, say } from './output.js';

/** Entries `contact-point audit` prints unless --limit says otherwise. */
export const DEFAULT_AUDIT_LINES = 50;
/** Most entries one `contact-point audit` prints (the admin API's page size). */
export const MAX_AUDIT_LINES = 1_000;

const AUDIT_HELP = `Usage: contact-point audit [--peer NAME] [--limit N] [flags]

The audit trail of a running contact point, newest first: every approve, reject, revoke,
forget, registration policy and port policy change, port close and settings change, with
when, through which admin surface (GUI, CLI or API) and the value before and after. The trail
is kept with the state (audit.jsonl in the state folder, rotated at 1 MiB, 4 files).

  --peer NAME   only the entries about peer NAME
  --limit N     at most N entries (default ${DEFAULT_AUDIT_LINES}, at most ${MAX_AUDIT_LINES})

Flags:
${CONNECTION_FLAGS}
`;

function time(at: number): string {
  return new Date(at).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

async function audit(argv: string[]): Promise<number> {
  const { values } = parseFlags({ args: argv, strict: true, options: { ...connectionOptions, peer: { type: 'string' }, limit: { type: 'string' } } });
  const peer = values.peer !== undefined ? name('--peer', values.peer) : undefined;
  const limit = countFlag('--limit', values.limit, MAX_AUDIT_LINES) ?? DEFAULT_AUDIT_LINES;
  const page = await withAdmin(values, (c) => c.call('audit:list', { limit, ...(peer !== undefined ? { target: peer } : {}) }));
  if (values.json) {
    // One entry a line (JSON lines), newest first, like the text.
    for (const e of page.entries) say(JSON.stringify(e));
    return 0;
  }
  if (page.entries.length === 0) {
    note(peer !== undefined ? `no audit entries about ${peer}` : 'no audit entries yet: decisions (peers approve, policy set, ...) are recorded here');
    return 0;
  }
  say(formatTable(['#', 'WHEN (UTC)', 'VIA', 'WHAT', 'CHANGE'], page.entries.map((e: AuditEntry) => [String(e.seq), time(e.at), SURFACE_LABEL[e.surface], auditWhat(e), auditChange(e.before, e.after)])));
  if (page.more) note(`older entries exist: --limit ${Math.min(MAX_AUDIT_LINES, limit * 2)} shows more`);
  return 0;
}

export const auditCommands: Command[] = [{ path: ['audit'], summary: 'the audit trail: who decided what, when, through which surface', help: AUDIT_HELP, run: audit }];
