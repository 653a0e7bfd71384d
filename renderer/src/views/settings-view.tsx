import { useEffect, useState, type FormEvent } from 'react';
import type { ContactPointInfo } from '../../../core/admin/contract.js';
import type { HostSettingsErrors, HostSettingsField, HostSettingsInput } from '../../../core/admin/host-settings.js';
import { restartCommand, shellQuote, type RestartCommand } from '../../../core/admin/launch.js';
import { Field } from '../components/field';
import { saveHostSettings, savePolicy, saveSealPolicy } from '../store/commands';
import { useApp, useCtx } from '../store/context';
import { validateConnection, type ConnectionForm } from '../settings/validate-connection';
import { checkSubnets } from '../settings/validate-policy';
import { ContentCheckSettings, OfficeRulesSettings } from './rules-forms';

function portOf(url: string | undefined): string {
  if (!url) return '0';
  try {
    return new URL(url).port || '0';
  } catch {
    return '0';
  }
}

/**
 * Headless: the command that restarts this contact point with the form's settings. From the
 * flags it was started with (the snapshot's `launch`), so nothing it was given is dropped;
 * without them (an older contact point) the settings alone, with the peer port's bind kept.
 */
function headlessCommand(cp: ContactPointInfo | undefined, s: HostSettingsInput): RestartCommand {
  const bound = new URL(cp?.peerPortUrl ?? 'ws://0.0.0.0:0');
  if (cp?.launch) return restartCommand(cp.launch, s, Number(bound.port));
  const words = s.relayUrl === '' ? ['contact-point', 'start'] : ['contact-point', 'serve', '--relay', s.relayUrl, '--id', s.id, '--credential-file', `${s.id}.credential`];
  return {
    line: [...words, '--peer-listen', `${bound.hostname}:${s.peerPort}`].map(shellQuote).join(' '),
    notes: ['This contact point did not say which flags it was started with: add them (--ca, --admin-listen, --state, ...).'],
  };
}

const FIELD_LABEL: Record<HostSettingsField, string> = { relayUrl: 'Relay URL', id: 'Contact point id', peerPort: 'Peer port', credential: 'Credential' };

function ConnectionSettings() {
  const ctx = useCtx();
  const host = useApp((s) => s.hostSettings);
  const cp = useApp((s) => s.contactPoint);
  const tunnel = useApp((s) => s.tunnel);
  const editable = ctx.api.settings !== undefined;
  const initial: ConnectionForm = host
    ? { relayUrl: host.relayUrl, id: host.id, peerPort: String(host.peerPort), credential: '' }
    : { relayUrl: cp?.embeddedRelay ? '' : (tunnel?.relayUrl ?? ''), id: cp?.id ?? '', peerPort: portOf(cp?.peerPortUrl), credential: '' };
  const [form, setForm] = useState<ConnectionForm>(initial);
  const [touched, setTouched] = useState(false);
  const [errors, setErrors] = useState<HostSettingsErrors>({});
  const [formError, setFormError] = useState<string>();
  const [command, setCommand] = useState<RestartCommand>();
  const [saving, setSaving] = useState(false);
  // Load what the host or the snapshot says once it arrives, unless the admin started typing.
  const initialKey = JSON.stringify(initial);
  useEffect(() => {
    if (!touched) setForm(JSON.parse(initialKey) as ConnectionForm);
  }, [initialKey, touched]);

  const set = (k: keyof ConnectionForm, v: string): void => {
    setTouched(true);
    setForm((f) => ({ ...f, [k]: v }));
    if (errors[k]) setErrors((e) => ({ ...e, [k]: undefined }));
  };

  const submit = async (e: FormEvent): Promise<void> => {
    e.preventDefault();
    setFormError(undefined);
    setCommand(undefined);
    // Headless: the credential goes in a file named on the command line, not through this form.
    const v = validateConnection(form, editable ? (host?.credentialSet ?? false) : true);
    if (!v.ok) {
      setErrors(v.errors);
      return;
    }
    setErrors({});
    if (!editable) {
      setCommand(headlessCommand(cp, v.value));
      return;
    }
    setSaving(true);
    const r = await saveHostSettings(ctx, v.value);
    setSaving(false);
    if ('errors' in r) setErrors(r.errors);
    else if (!r.ok) setFormError(r.error);
    else {
      setTouched(false);
      setForm((f) => ({ ...f, credential: '' }));
    }
  };

  const errorList = (Object.entries(errors) as [HostSettingsField, string | undefined][]).filter(([, v]) => v);
  return (
    <form className="card" aria-labelledby="conn-title" noValidate onSubmit={(e) => void submit(e)}>
      <h2 id="conn-title">Relay connection</h2>
      {!editable ? (
        <p className="note" role="note">
          This page is served by a headless contact point (<code>contact-point serve</code>): these settings come from its command line and cannot
          be changed from the browser. Edit them here to check them and get the command to run; the desktop app saves them directly.
        </p>
      ) : null}
      {errorList.length > 0 ? (
        <div className="error-summary" role="alert" aria-labelledby="conn-errors">
          <p id="conn-errors">Please fix {errorList.length === 1 ? 'this field' : `these ${errorList.length} fields`}:</p>
          <ul>
            {errorList.map(([k, v]) => (
              <li key={k}>
                {FIELD_LABEL[k]}: {v}
              </li>
            ))}
          </ul>
        </div>
      ) : null}
      <Field label="Relay URL" hint="ws:// or wss:// address of the public relay. Leave empty to run on the embedded local demo relay." error={errors.relayUrl}>
        {({ id, describedBy, invalid }) => (
          <input id={id} type="url" inputMode="url" placeholder="wss://relay.example.com/v1" value={form.relayUrl} aria-describedby={describedBy} aria-invalid={invalid} onChange={(e) => set('relayUrl', e.target.value)} />
        )}
      </Field>
      <Field label="Contact point id" hint="This contact point's name at the relay: peers are reached as name@id." error={errors.id}>
        {({ id, describedBy, invalid }) => (
          <input id={id} type="text" autoComplete="off" spellCheck={false} value={form.id} aria-describedby={describedBy} aria-invalid={invalid} onChange={(e) => set('id', e.target.value)} />
        )}
      </Field>
      <Field
        label="Credential"
        hint={!editable ? 'Not taken here: a headless contact point reads its credential from the file named by --credential-file (or CONTACT_POINT_CREDENTIAL).' : host?.credentialSet ? `A credential is stored (${host.credentialStorage === 'os-keychain' ? 'encrypted with the OS keychain' : 'unencrypted: this system has no keychain'}). Leave empty to keep it.` : 'The secret the relay issued for this id.'}
        error={errors.credential}
      >
        {({ id, describedBy, invalid }) => (
          <input id={id} type="password" autoComplete="new-password" value={form.credential} aria-describedby={describedBy} aria-invalid={invalid} onChange={(e) => set('credential', e.target.value)} />
        )}
      </Field>
      <Field label="Peer port" hint="TCP port LAN peers connect to; 0 picks any free port." error={errors.peerPort}>
        {({ id, describedBy, invalid }) => (
          <input id={id} type="text" inputMode="numeric" className="short" value={form.peerPort} aria-describedby={describedBy} aria-invalid={invalid} onChange={(e) => set('peerPort', e.target.value)} />
        )}
      </Field>
      {formError ? (
        <p className="error" role="alert">
          {formError}
        </p>
      ) : null}
      {command ? (
        <div className="command" role="status" data-testid="restart-command">
          <p>Settings are valid. Restart the headless contact point with this command: it keeps every flag the running one was given, with your change.</p>
          <pre>
            <code>{command.line}</code>
          </pre>
          <ul>
            {command.notes.map((n) => (
              <li key={n}>{n}</li>
            ))}
          </ul>
        </div>
      ) : null}
      <div className="form-actions">
        <button type="submit" className="primary" disabled={saving}>
          {editable ? (saving ? 'Saving…' : 'Save and restart') : 'Check settings'}
        </button>
      </div>
    </form>
  );
}

function PolicySettings() {
  const ctx = useCtx();
  const policy = useApp((s) => s.policy);
  const initial = (policy?.subnets ?? []).join('\n');
  const [subnets, setSubnets] = useState(initial);
  const [touched, setTouched] = useState(false);
  const [joinCode, setJoinCode] = useState('');
  const [clearCode, setClearCode] = useState(false);
  const [errors, setErrors] = useState<{ subnets?: string; joinCode?: string; form?: string }>({});
  const [saving, setSaving] = useState(false);
  useEffect(() => {
    if (!touched) setSubnets(initial);
  }, [initial, touched]);

  const submit = async (e: FormEvent): Promise<void> => {
    e.preventDefault();
    const check = checkSubnets(subnets);
    const next: typeof errors = {};
    if (check.errors.length > 0) next.subnets = check.errors.map((x) => (x.line ? `Line ${x.line} “${x.text}” ${x.problem}.` : `${x.problem}.`)).join(' ');
    if (joinCode.length > 128) next.joinCode = 'At most 128 characters.';
    else if (joinCode !== '' && joinCode.trim().length < 6) next.joinCode = 'Use at least 6 characters, so it cannot be guessed quickly.';
    setErrors(next);
    if (Object.keys(next).length > 0) return;
    setSaving(true);
    const r = await savePolicy(ctx, check.subnets, clearCode ? '' : joinCode !== '' ? joinCode : undefined);
    setSaving(false);
    if (!r.ok) setErrors({ form: r.error });
    else {
      setTouched(false);
      setJoinCode('');
      setClearCode(false);
    }
  };

  return (
    <form className="card" aria-labelledby="policy-title" noValidate onSubmit={(e) => void submit(e)}>
      <h2 id="policy-title">Registration policy</h2>
      <p className="muted">Peers matching the policy are registered without asking you; the Peers view shows which rule admitted each.</p>
      <Field label="Auto-approve subnets" hint="One CIDR per line, e.g. 192.168.10.0/24. Peers connecting from these addresses are registered at once." error={errors.subnets}>
        {({ id, describedBy, invalid }) => (
          <textarea
            id={id}
            rows={3}
            spellCheck={false}
            value={subnets}
            aria-describedby={describedBy}
            aria-invalid={invalid}
            onChange={(e) => {
              setTouched(true);
              setSubnets(e.target.value);
            }}
          />
        )}
      </Field>
      <Field label="Join code" hint={policy?.joinCode ? 'A join code is set (stored hashed). Type a new one to replace it.' : 'No join code is set. Peers presenting this code are registered at once.'} error={errors.joinCode}>
        {({ id, describedBy, invalid }) => (
          <input id={id} type="password" autoComplete="new-password" disabled={clearCode} value={joinCode} aria-describedby={describedBy} aria-invalid={invalid} onChange={(e) => setJoinCode(e.target.value)} />
        )}
      </Field>
      {policy?.joinCode ? (
        <label className="check">
          <input type="checkbox" checked={clearCode} onChange={(e) => setClearCode(e.target.checked)} /> Remove the join code
        </label>
      ) : null}
      {errors.form ? (
        <p className="error" role="alert">
          The contact point refused the policy: {errors.form}
        </p>
      ) : null}
      <div className="form-actions">
        <button type="submit" className="primary" disabled={saving}>
          {saving ? 'Saving…' : 'Apply policy'}
        </button>
      </div>
    </form>
  );
}

/**
 * The contact point's key fingerprint (what external peers pin: it goes beside every external
 * credential handed out) and the policy "sealed payloads only", office-wide or per peer.
 */
function SealSettings() {
  const ctx = useCtx();
  const seal = useApp((s) => s.seal);
  const peers = useApp((s) => s.peers);
  const initialKey = JSON.stringify({ required: seal?.required ?? false, peers: seal?.peers ?? [] });
  const [form, setForm] = useState<{ required: boolean; peers: string[] }>(JSON.parse(initialKey) as { required: boolean; peers: string[] });
  const [touched, setTouched] = useState(false);
  const [error, setError] = useState<string>();
  const [saving, setSaving] = useState(false);
  useEffect(() => {
    if (!touched) setForm(JSON.parse(initialKey) as { required: boolean; peers: string[] });
  }, [initialKey, touched]);
  if (!seal) return null;
  const registered = [...peers.values()].filter((p) => p.state === 'registered' || form.peers.includes(p.name)).map((p) => p.name).sort();
  const toggle = (name: string, on: boolean): void => {
    setTouched(true);
    setForm((f) => ({ ...f, peers: on ? [...f.peers, name] : f.peers.filter((n) => n !== name) }));
  };
  const submit = async (e: FormEvent): Promise<void> => {
    e.preventDefault();
    setSaving(true);
    const r = await saveSealPolicy(ctx, form.required, form.peers);
    setSaving(false);
    if (!r.ok) setError(r.error);
    else {
      setError(undefined);
      setTouched(false);
    }
  };
  return (
    <form className="card" aria-labelledby="seal-title" noValidate onSubmit={(e) => void submit(e)}>
      <h2 id="seal-title">Sealed messages</h2>
      <p className="muted">
        Peers seal message payloads end to end: the relay and this contact point see who sends to whom, sizes and times, never the content.
      </p>
      <div className="field">
        <span className="label">Key fingerprint</span>
        <p className="mono fingerprint" data-testid="seal-fingerprint">
          {seal.fingerprint}
        </p>
        <p className="hint">
          Give it to every external peer with its credential (<code>peer send --pin</code>): a peer that pinned it refuses anyone else posing as
          this office. <code>contact-point fingerprint</code> prints it too.
        </p>
      </div>
      <label className="check">
        <input
          type="checkbox"
          checked={form.required}
          onChange={(e) => {
            setTouched(true);
            setForm((f) => ({ ...f, required: e.target.checked }));
          }}
        />{' '}
        Sealed payloads only, for every peer (plain messages are refused SEAL_REQUIRED)
      </label>
      {!form.required && registered.length > 0 ? (
        <fieldset className="field">
          <legend>Sealed payloads only for these peers</legend>
          {registered.map((name) => (
            <label className="check" key={name}>
              <input type="checkbox" checked={form.peers.includes(name)} onChange={(e) => toggle(name, e.target.checked)} /> {name}
            </label>
          ))}
        </fieldset>
      ) : null}
      <p className="muted">
        {seal.bindings} external address{seal.bindings === 1 ? '' : 'es'} bound to a sealing key (the first key each used; another key is refused KEY_CHANGED).
      </p>
      {error ? (
        <p className="error" role="alert">
          The contact point refused the policy: {error}
        </p>
      ) : null}
      <div className="form-actions">
        <button type="submit" className="primary" disabled={saving}>
          {saving ? 'Saving…' : 'Apply sealing policy'}
        </button>
      </div>
    </form>
  );
}

export function SettingsView() {
  const cp = useApp((s) => s.contactPoint);
  return (
    <section aria-labelledby="settings-title" className="view">
      <header className="view-head">
        <h1 id="settings-title">Settings</h1>
      </header>
      {cp?.embeddedRelay ? (
        <div className="banner demo" role="note">
          <strong>Running on the embedded local demo relay.</strong> Nothing outside this computer can reach it, and it forgets everything when it
          stops. To serve a real office, point the contact point at a public relay below.
        </div>
      ) : null}
      {cp ? (
        <p className="muted">
          Contact point <strong>{cp.id}</strong> · version {cp.version} · peer port <code>{cp.peerPortUrl}</code>
        </p>
      ) : null}
      <div className="cards">
        <ConnectionSettings />
        <PolicySettings />
        <OfficeRulesSettings />
        <ContentCheckSettings />
        <SealSettings />
      </div>
    </section>
  );
}
