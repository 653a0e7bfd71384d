import { useEffect, useState, type FormEvent } from 'react';
import type { ContentCheckView, RuleRefusalsView, RuleSetView } from '../../../core/admin/contract.js';
import { checkText } from '../../../core/admin/rules-text.js';
import { errorText } from '../api/admin-call-error';
import { Field } from '../components/field';
import { formatBytes, formatCount, formatTimestamp } from '../format/units';
import { ruleRefusals, saveCheck, saveRules } from '../store/commands';
import { useApp, useCtx } from '../store/context';

/** How often the peer page asks again what the rules refused (they are counted all the time). */
const REFUSALS_REFRESH_MS = 5_000;

/** A rule set in words: `allow tech@relay *@branch; at most 4 KiB; at most 60 a minute`. */
export function ruleText(r: RuleSetView | undefined, unset: string): string {
  if (!r) return unset;
  const parts = [
    r.allow !== undefined ? (r.allow.length > 0 ? `only ${r.allow.join(', ')}` : 'no one') : undefined,
    r.maxBytes !== undefined ? `at most ${formatBytes(r.maxBytes)}` : undefined,
    r.perMinute !== undefined ? `at most ${formatCount(r.perMinute)} a minute` : undefined,
  ].filter((x) => x !== undefined);
  return parts.length > 0 ? parts.join('; ') : unset;
}

interface RuleForm {
  /** restrict the senders: the patterns below; else the office default (a peer) or anyone (the office) */
  readonly restrict: boolean;
  readonly allow: string;
  readonly maxBytes: string;
  readonly perMinute: string;
}

function formOf(r: RuleSetView | undefined): RuleForm {
  return { restrict: r?.allow !== undefined, allow: (r?.allow ?? []).join('\n'), maxBytes: r?.maxBytes !== undefined ? String(r.maxBytes) : '', perMinute: r?.perMinute !== undefined ? String(r.perMinute) : '' };
}

/** A whole number of at least 1, or undefined for an empty field; an error text otherwise. */
function count(text: string): number | undefined | string {
  const t = text.trim();
  if (t === '') return undefined;
  return /^\d+$/.test(t) && Number(t) >= 1 ? Number(t) : 'A whole number of at least 1, or empty.';
}

/**
 * The rules of one peer (`peer`) or the office default: who may message it, the largest payload
 * and the rate. An empty field takes the office default's (a peer) or sets no limit (the office).
 */
function RuleSetForm({ peer }: { peer: string | undefined }) {
  const ctx = useCtx();
  const rules = useApp((s) => s.rules);
  const current = peer === undefined ? rules?.office : rules?.peers.find((p) => p.name === peer);
  const initial = formOf(current);
  const [form, setForm] = useState<RuleForm>(initial);
  const [touched, setTouched] = useState(false);
  const [errors, setErrors] = useState<{ maxBytes?: string; perMinute?: string; form?: string }>({});
  const [saving, setSaving] = useState(false);
  const initialKey = JSON.stringify(initial);
  useEffect(() => {
    if (!touched) setForm(JSON.parse(initialKey) as RuleForm);
  }, [initialKey, touched]);
  const set = <K extends keyof RuleForm>(k: K, v: RuleForm[K]): void => {
    setTouched(true);
    setForm((f) => ({ ...f, [k]: v }));
  };
  const inherit = peer !== undefined ? 'the office default' : 'no limit';

  const submit = async (e: FormEvent): Promise<void> => {
    e.preventDefault();
    const maxBytes = count(form.maxBytes);
    const perMinute = count(form.perMinute);
    const next: typeof errors = {};
    if (typeof maxBytes === 'string') next.maxBytes = maxBytes;
    if (typeof perMinute === 'string') next.perMinute = perMinute;
    setErrors(next);
    if (Object.keys(next).length > 0) return;
    const allow = form.allow.split(/\s+/).filter((x) => x !== '');
    setSaving(true);
    const r = await saveRules(ctx, peer, {
      ...(form.restrict ? { allow } : {}),
      ...(typeof maxBytes === 'number' ? { maxBytes } : {}),
      ...(typeof perMinute === 'number' ? { perMinute } : {}),
    });
    setSaving(false);
    if (!r.ok) setErrors({ form: r.error });
    else setTouched(false);
  };

  return (
    <form className="rules-form" aria-label={peer !== undefined ? `Access rules of ${peer}` : 'Office default access rules'} noValidate onSubmit={(e) => void submit(e)}>
      <fieldset className="radio-group">
        <legend>Who may message {peer ?? 'a peer'}</legend>
        <label className="check">
          <input type="radio" name={`restrict-${peer ?? 'office'}`} checked={!form.restrict} onChange={() => set('restrict', false)} /> {peer !== undefined ? 'As the office default says' : 'Anyone the relay lets through'}
        </label>
        <label className="check">
          <input type="radio" name={`restrict-${peer ?? 'office'}`} checked={form.restrict} onChange={() => set('restrict', true)} /> Only these senders
        </label>
      </fieldset>
      {form.restrict ? (
        <Field label="Allowed senders" hint="One pattern a line: tech@relay (one external peer), *@relay (every external peer), *@branch (another office), scanner@… or *@… of this office (LAN peers). None: no one." error={undefined}>
          {({ id, describedBy }) => <textarea id={id} rows={3} spellCheck={false} value={form.allow} aria-describedby={describedBy} onChange={(e) => set('allow', e.target.value)} />}
        </Field>
      ) : null}
      <div className="field-row">
        <Field label="Largest message (bytes)" hint={`Empty: ${inherit}.`} error={errors.maxBytes}>
          {({ id, describedBy, invalid }) => <input id={id} className="short" inputMode="numeric" value={form.maxBytes} aria-describedby={describedBy} aria-invalid={invalid} onChange={(e) => set('maxBytes', e.target.value)} />}
        </Field>
        <Field label="Messages a minute" hint={`Empty: ${inherit}.`} error={errors.perMinute}>
          {({ id, describedBy, invalid }) => <input id={id} className="short" inputMode="numeric" value={form.perMinute} aria-describedby={describedBy} aria-invalid={invalid} onChange={(e) => set('perMinute', e.target.value)} />}
        </Field>
      </div>
      {errors.form ? (
        <p className="error" role="alert">
          The contact point refused the rules: {errors.form}
        </p>
      ) : null}
      <div className="form-actions">
        <button type="submit" className="primary" disabled={saving}>
          {saving ? 'Saving…' : 'Save rules'}
        </button>
      </div>
    </form>
  );
}

/** Settings: the office default rules (peers without rules of their own, and names that do not exist). */
export function OfficeRulesSettings() {
  return (
    <section className="card" aria-labelledby="office-rules-title">
      <h2 id="office-rules-title">Access rules: office default</h2>
      <p className="muted">
        Every message for a LAN peer is checked here. A sender the rules do not let in is refused NOT_ALLOWED, whether the peer exists or not. A
        peer&apos;s page sets rules of its own.
      </p>
      <RuleSetForm peer={undefined} />
    </section>
  );
}

interface CheckForm {
  readonly kind: ContentCheckView['kind'];
  readonly depth: string;
  readonly argv: string;
  readonly timeoutMs: string;
  readonly failure: 'closed' | 'open';
  readonly concurrency: string;
}

function checkFormOf(c: ContentCheckView | undefined): CheckForm {
  return {
    kind: c?.kind ?? 'none',
    depth: c?.kind === 'json-depth' ? String(c.depth) : '32',
    argv: c?.kind === 'command' ? c.argv.join(' ') : '',
    timeoutMs: c?.kind === 'command' ? String(c.timeoutMs) : '2000',
    failure: c?.kind === 'command' ? c.failure : 'closed',
    concurrency: c?.kind === 'command' ? String(c.concurrency) : '16',
  };
}

/** Settings: the content check every message to a LAN peer passes. */
export function ContentCheckSettings() {
  const ctx = useCtx();
  const check = useApp((s) => s.rules?.check);
  const initial = checkFormOf(check);
  const [form, setForm] = useState<CheckForm>(initial);
  const [touched, setTouched] = useState(false);
  const [errors, setErrors] = useState<Partial<Record<keyof CheckForm | 'form', string>>>({});
  const [saving, setSaving] = useState(false);
  const initialKey = JSON.stringify(initial);
  useEffect(() => {
    if (!touched) setForm(JSON.parse(initialKey) as CheckForm);
  }, [initialKey, touched]);
  const set = <K extends keyof CheckForm>(k: K, v: CheckForm[K]): void => {
    setTouched(true);
    setForm((f) => ({ ...f, [k]: v }));
  };

  const submit = async (e: FormEvent): Promise<void> => {
    e.preventDefault();
    const next: typeof errors = {};
    const num = (k: 'depth' | 'timeoutMs' | 'concurrency'): number => {
      const n = count(form[k]);
      if (typeof n !== 'number') next[k] = 'A whole number of at least 1.';
      return typeof n === 'number' ? n : 0;
    };
    let spec: ContentCheckView;
    if (form.kind === 'none') spec = { kind: 'none' };
    else if (form.kind === 'json-depth') spec = { kind: 'json-depth', depth: num('depth') };
    else {
      const argv = form.argv.split(/\s+/).filter((x) => x !== '');
      if (argv.length === 0) next.argv = 'The program to run, and its arguments.';
      spec = { kind: 'command', argv, timeoutMs: num('timeoutMs'), failure: form.failure, concurrency: num('concurrency') };
    }
    setErrors(next);
    if (Object.keys(next).length > 0) return;
    setSaving(true);
    const r = await saveCheck(ctx, spec);
    setSaving(false);
    if (!r.ok) setErrors({ form: r.error });
    else setTouched(false);
  };

  return (
    <form className="card" aria-labelledby="check-title" noValidate onSubmit={(e) => void submit(e)}>
      <h2 id="check-title">Content check</h2>
      <p className="muted">
        Now: <span data-testid="check-now">{checkText(check)}</span>. Every message for a LAN peer passes it; a refusal is CONTENT_REFUSED with the
        check&apos;s reason.
      </p>
      <Field label="Check" error={undefined}>
        {({ id }) => (
          <select id={id} value={form.kind} onChange={(e) => set('kind', e.target.value as CheckForm['kind'])}>
            <option value="none">None</option>
            <option value="json-depth">Built-in: maximum JSON depth</option>
            <option value="command">A command (JSON lines on stdin and stdout)</option>
          </select>
        )}
      </Field>
      {form.kind === 'json-depth' ? (
        <Field label="Deepest nesting allowed" hint="Payloads nested deeper ([ and { outside strings) are refused." error={errors.depth}>
          {({ id, describedBy, invalid }) => <input id={id} className="short" inputMode="numeric" value={form.depth} aria-describedby={describedBy} aria-invalid={invalid} onChange={(e) => set('depth', e.target.value)} />}
        </Field>
      ) : null}
      {form.kind === 'command' ? (
        <>
          <Field label="Command" hint="The program and its arguments, separated by spaces (no shell). It runs as one long-lived process; see docs/PROTOCOL.md 9.6." error={errors.argv}>
            {({ id, describedBy, invalid }) => <input id={id} spellCheck={false} value={form.argv} aria-describedby={describedBy} aria-invalid={invalid} onChange={(e) => set('argv', e.target.value)} />}
          </Field>
          <div className="field-row">
            <Field label="Time budget (ms)" error={errors.timeoutMs}>
              {({ id, describedBy, invalid }) => <input id={id} className="short" inputMode="numeric" value={form.timeoutMs} aria-describedby={describedBy} aria-invalid={invalid} onChange={(e) => set('timeoutMs', e.target.value)} />}
            </Field>
            <Field label="At once" error={errors.concurrency}>
              {({ id, describedBy, invalid }) => <input id={id} className="short" inputMode="numeric" value={form.concurrency} aria-describedby={describedBy} aria-invalid={invalid} onChange={(e) => set('concurrency', e.target.value)} />}
            </Field>
            <Field label="When it times out or fails" error={undefined}>
              {({ id }) => (
                <select id={id} value={form.failure} onChange={(e) => set('failure', e.target.value as 'closed' | 'open')}>
                  <option value="closed">Refuse the message (fail-closed)</option>
                  <option value="open">Deliver the message (fail-open)</option>
                </select>
              )}
            </Field>
          </div>
        </>
      ) : null}
      {errors.form ? (
        <p className="error" role="alert">
          The contact point refused the check: {errors.form}
        </p>
      ) : null}
      <div className="form-actions">
        <button type="submit" className="primary" disabled={saving}>
          {saving ? 'Saving…' : 'Save check'}
        </button>
      </div>
    </form>
  );
}

/** The peer page's rules: what applies to it (its own or the office default's), the form, and the refusals they caused. */
export function PeerRules({ name }: { name: string }) {
  const ctx = useCtx();
  const rules = useApp((s) => s.rules);
  const own = rules?.peers.find((p) => p.name === name);
  const [refusals, setRefusals] = useState<RuleRefusalsView>();
  const [error, setError] = useState<string>();
  const [editing, setEditing] = useState(false);

  useEffect(() => {
    let current = true;
    const load = (): void => {
      ruleRefusals(ctx, name).then(
        (r) => {
          if (current) {
            setRefusals(r);
            setError(undefined);
          }
        },
        (err: unknown) => {
          if (current) setError(errorText(err));
        },
      );
    };
    load();
    const t = setInterval(load, REFUSALS_REFRESH_MS);
    return () => {
      current = false;
      clearInterval(t);
    };
  }, [ctx, name]);

  const office = rules?.office;
  const senders = own?.allow !== undefined ? ruleText({ allow: own.allow }, '') : office?.allow !== undefined ? `${ruleText({ allow: office.allow }, '')} (office default)` : 'anyone (office default)';
  const size = own?.maxBytes ?? office?.maxBytes;
  const rate = own?.perMinute ?? office?.perMinute;
  const counts = Object.entries(refusals?.counts ?? {});
  return (
    <section aria-labelledby="peer-rules-title" className="peer-section" data-testid="peer-rules">
      <h2 id="peer-rules-title">Access rules</h2>
      <dl className="peer-facts">
        <dt>Who may message it</dt>
        <dd data-testid="rules-senders">{senders}</dd>
        <dt>Largest message</dt>
        <dd>{size !== undefined ? `${formatBytes(size)}${own?.maxBytes === undefined ? ' (office default)' : ''}` : 'no limit of its own'}</dd>
        <dt>Rate</dt>
        <dd>{rate !== undefined ? `${formatCount(rate)} a minute${own?.perMinute === undefined ? ' (office default)' : ''}` : 'no limit of its own'}</dd>
        <dt>Content check</dt>
        <dd>{checkText(rules?.check)}</dd>
      </dl>
      {editing ? (
        <RuleSetForm peer={name} />
      ) : (
        <button type="button" onClick={() => setEditing(true)}>
          Edit rules
        </button>
      )}
      <h3>Refused by the rules since the contact point started</h3>
      {error ? <p className="muted">Could not load the refusals: {error}</p> : null}
      <p data-testid="rules-refusal-counts">{counts.length > 0 ? counts.map(([k, n]) => `${formatCount(n)} ${k}`).join(', ') : 'None.'}</p>
      {refusals && refusals.recent.length > 0 ? (
        <table className="peer-flow" aria-label="Refused by the rules">
          <thead>
            <tr>
              <th scope="col">Time</th>
              <th scope="col">From</th>
              <th scope="col">Reason</th>
            </tr>
          </thead>
          <tbody>
            {refusals.recent.map((r, i) => (
              <tr key={`${r.at}-${i}`}>
                <td className="mono muted">{formatTimestamp(r.at)}</td>
                <td className="mono">{r.from}</td>
                <td>{r.reason}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
    </section>
  );
}
