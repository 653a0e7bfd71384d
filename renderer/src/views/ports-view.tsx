import { useEffect, useState, type FormEvent } from 'react';
import type { PortView } from '../../../core/admin/contract.js';
import { ConfirmDialog, type ConfirmRequest } from '../components/confirm-dialog';
import { useNow } from '../components/use-now';
import { formatAgo, formatBytes, formatCount } from '../format/units';
import { closePort, savePortPolicy } from '../store/commands';
import { useApp, useCtx } from '../store/context';

/** Rules per list and longest rule, as in the contract's ports:policy schema. */
const MAX_RULES = 256;
const MAX_RULE_LENGTH = 80;

function lines(text: string): string[] {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
}

function ruleProblems(rules: string[], what: string): string | undefined {
  if (rules.length > MAX_RULES) return `At most ${MAX_RULES} ${what} rules.`;
  const long = rules.find((r) => r.length > MAX_RULE_LENGTH);
  if (long) return `“${long.slice(0, 24)}…” is longer than ${MAX_RULE_LENGTH} characters.`;
  const spaced = rules.find((r) => /\s/.test(r));
  if (spaced) return `“${spaced}” contains a space; write one rule per line.`;
  return undefined;
}

function PortPolicyForm() {
  const ctx = useCtx();
  const policy = useApp((s) => s.portPolicy);
  const initial = { targets: (policy?.targets ?? []).join('\n'), listen: (policy?.listen ?? []).join('\n') };
  const key = JSON.stringify(initial);
  const [form, setForm] = useState(initial);
  const [touched, setTouched] = useState(false);
  const [errors, setErrors] = useState<{ targets?: string; listen?: string; form?: string }>({});
  const [saving, setSaving] = useState(false);
  useEffect(() => {
    if (!touched) setForm(JSON.parse(key) as typeof initial);
  }, [key, touched]);

  const submit = async (e: FormEvent): Promise<void> => {
    e.preventDefault();
    const targets = lines(form.targets);
    const listen = lines(form.listen);
    const next: typeof errors = {};
    const t = ruleProblems(targets, 'target');
    const l = ruleProblems(listen, 'listen');
    if (t) next.targets = t;
    if (l) next.listen = l;
    setErrors(next);
    if (t || l) return;
    setSaving(true);
    const r = await savePortPolicy(ctx, targets, listen);
    setSaving(false);
    if (!r.ok) setErrors({ form: r.error });
    else setTouched(false);
  };
  const edit = (k: 'targets' | 'listen', v: string): void => {
    setTouched(true);
    setForm((f) => ({ ...f, [k]: v }));
  };

  return (
    <form className="card" aria-labelledby="port-policy-title" noValidate onSubmit={(e) => void submit(e)}>
      <h2 id="port-policy-title">Port policy</h2>
      <p className="muted">The relay can open, connect and listen on LAN ports only within these rules. Empty lists allow nothing.</p>
      <div className={`field ${errors.targets ? 'has-error' : ''}`}>
        <label htmlFor="port-targets">LAN targets</label>
        <textarea id="port-targets" rows={3} spellCheck={false} value={form.targets} aria-invalid={Boolean(errors.targets)} aria-describedby="port-targets-hint port-targets-error" onChange={(e) => edit('targets', e.target.value)} />
        <p id="port-targets-hint" className="hint">
          One per line: addresses and ports the relay may connect to, e.g. <code>192.168.1.0/24:80,443</code>.
        </p>
        {errors.targets ? (
          <p id="port-targets-error" className="error" role="alert">
            {errors.targets}
          </p>
        ) : null}
      </div>
      <div className={`field ${errors.listen ? 'has-error' : ''}`}>
        <label htmlFor="port-listen">Local ports</label>
        <textarea id="port-listen" rows={2} spellCheck={false} value={form.listen} aria-invalid={Boolean(errors.listen)} aria-describedby="port-listen-hint port-listen-error" onChange={(e) => edit('listen', e.target.value)} />
        <p id="port-listen-hint" className="hint">
          One per line: ports this computer may open or listen on, e.g. <code>tcp:8000-8100</code>.
        </p>
        {errors.listen ? (
          <p id="port-listen-error" className="error" role="alert">
            {errors.listen}
          </p>
        ) : null}
      </div>
      {errors.form ? (
        <p className="error" role="alert">
          The contact point refused the policy: {errors.form}
        </p>
      ) : null}
      <div className="form-actions">
        <button type="submit" className="primary" disabled={saving}>
          {saving ? 'Saving…' : 'Apply port policy'}
        </button>
      </div>
    </form>
  );
}

export function PortsView() {
  const ctx = useCtx();
  const ports = useApp((s) => s.ports);
  const busy = useApp((s) => s.portBusy);
  const [confirm, setConfirm] = useState<ConfirmRequest>();
  const now = useNow(5_000);
  const close = (p: PortView): void =>
    setConfirm({
      title: `Close port #${p.id}?`,
      body: (
        <p>
          {p.proto.toUpperCase()} {p.address}:{p.port}
          {p.target ? ` → ${p.target}` : ''} is closed at once, with its {p.streams} open stream{p.streams === 1 ? '' : 's'}. The relay ({p.operator}) is told.
        </p>
      ),
      confirmLabel: 'Close port',
      danger: true,
      onConfirm: () => void closePort(ctx, p.id),
    });
  return (
    <section aria-labelledby="ports-title" className="view">
      <header className="view-head">
        <h1 id="ports-title">Ports</h1>
        <span className="muted">{formatCount(ports.length)} open</span>
      </header>
      {ports.length === 0 ? (
        <p className="empty">No open ports. The relay opens LAN ports here only when asked, and only within the port policy below.</p>
      ) : (
        <div className="table-wrap">
          <table className="peers">
            <thead>
              <tr>
                <th scope="col">#</th>
                <th scope="col">Proto</th>
                <th scope="col">Local</th>
                <th scope="col">State</th>
                <th scope="col">Target</th>
                <th scope="col">Operator</th>
                <th scope="col" className="num">
                  Streams
                </th>
                <th scope="col" className="num" title="Connections refused on this port: over a stream limit, a failed connect, or not allowed">
                  Refused
                </th>
                <th scope="col" className="num" title="Bytes from the relay towards the LAN">
                  In
                </th>
                <th scope="col" className="num" title="Bytes from the LAN towards the relay">
                  Out
                </th>
                <th scope="col">Opened</th>
                <th scope="col">
                  <span className="visually-hidden">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {ports.map((p) => (
                <tr key={p.id} data-port={p.id}>
                  <th scope="row">{p.id}</th>
                  <td>{p.proto.toUpperCase()}</td>
                  <td className="mono">
                    {p.address}:{p.port}
                  </td>
                  <td>{p.state}</td>
                  <td className="mono">{p.target ?? '—'}</td>
                  <td>{p.operator}</td>
                  <td className="num">{formatCount(p.streams)}</td>
                  <td className={p.refused > 0 ? 'num warn' : 'num'} data-refused={p.refused}>
                    {formatCount(p.refused)}
                  </td>
                  <td className="num" data-bytes-in={p.bytesIn}>
                    {formatBytes(p.bytesIn)}
                  </td>
                  <td className="num" data-bytes-out={p.bytesOut}>
                    {formatBytes(p.bytesOut)}
                  </td>
                  <td>{formatAgo(p.createdAt, now)}</td>
                  <td>
                    <div className="actions">
                      <button type="button" className="danger" disabled={busy.has(p.id)} aria-label={`Close port ${p.id}`} onClick={() => close(p)}>
                        Close
                      </button>
                    </div>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <div className="cards">
        <PortPolicyForm />
      </div>
      <ConfirmDialog request={confirm} onClose={() => setConfirm(undefined)} />
    </section>
  );
}
