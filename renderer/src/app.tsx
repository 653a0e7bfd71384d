import { useEffect, useRef, type KeyboardEvent } from 'react';
import { AdminUrlHelp } from './components/admin-url-help';
import { useNow } from './components/use-now';
import { useApp, useCtx } from './store/context';
import { dismissNotice, showView, type ViewName } from './store/session-slice';
import { AuditView } from './views/audit-view';
import { FlowView } from './views/flow-view';
import { PeersView } from './views/peers-view';
import { PortsView } from './views/ports-view';
import { SettingsView } from './views/settings-view';
import { TunnelView, tunnelSentence } from './views/tunnel-view';

const VIEWS: readonly { readonly name: ViewName; readonly label: string; readonly key: string }[] = [
  { name: 'peers', label: 'Peers', key: '1' },
  { name: 'flow', label: 'Live flow', key: '2' },
  { name: 'tunnel', label: 'Tunnel', key: '3' },
  { name: 'ports', label: 'Ports', key: '4' },
  { name: 'audit', label: 'Audit', key: '5' },
  { name: 'settings', label: 'Settings', key: '6' },
];

/**
 * How long an “ok” notice stays (it fades out over its last FADE_MS, styles.css). Errors stay
 * until dismissed: they say something failed, and a message gone before it was read is lost.
 */
export const NOTICE_MS = 4_000;

function Notices() {
  const ctx = useCtx();
  const notices = useApp((s) => s.notices);
  useEffect(() => {
    // Each from its own start: a newer notice does not keep the older ones up.
    const now = Date.now();
    const timers = notices.filter((n) => n.kind === 'ok').map((n) => setTimeout(() => dismissNotice(ctx.store, n.id), Math.max(0, n.at + NOTICE_MS - now)));
    return () => timers.forEach(clearTimeout);
  }, [notices, ctx.store]);
  // In the layout below the views, not over them: a notice never hides the last row of a list.
  if (notices.length === 0) return null;
  return (
    <div className="notices" aria-live="polite" data-testid="notices">
      {notices.map((n) => (
        <div key={n.id} className={`notice ${n.kind}`} role={n.kind === 'error' ? 'alert' : 'status'}>
          <span>{n.text}</span>
          <button type="button" className="link" aria-label="Dismiss" onClick={() => dismissNotice(ctx.store, n.id)}>
            ×
          </button>
        </div>
      ))}
    </div>
  );
}

function ConnectionBanner() {
  const c = useApp((s) => s.connection);
  const now = useNow(500);
  if (c.state === 'open') return null;
  if (c.state === 'connecting') return <div className="banner info" role="status">Connecting to the contact point…</div>;
  const wait = c.retryAt ? Math.max(0, Math.ceil((c.retryAt - now) / 1000)) : undefined;
  return (
    <div className="banner error" role="alert">
      <strong>Lost the connection to the contact point.</strong> {c.detail}. {wait ? `Retrying in ${wait} s…` : 'Retrying…'} What you see may be out of date.
    </div>
  );
}

function TunnelPill() {
  const t = useApp((s) => s.tunnel);
  const now = useNow(1_000);
  if (!t) return null;
  return (
    <span className={`pill ${t.state}`} title={tunnelSentence(t, now)} data-testid="tunnel-pill">
      <span className={`dot ${t.state}`} aria-hidden="true" />
      {t.relayUrl === '' ? 'no relay (direct mode)' : `tunnel ${t.state}`}
    </span>
  );
}

export function App() {
  const ctx = useCtx();
  const view = useApp((s) => s.view);
  const openPorts = useApp((s) => s.ports.length);
  const pending = useApp((s) => {
    let n = 0;
    for (const p of s.peers.values()) if (p.state === 'pending') n++;
    return n;
  });
  const cp = useApp((s) => s.contactPoint);
  const connection = useApp((s) => s.connection);
  const main = useRef<HTMLElement>(null);

  useEffect(() => {
    document.title = `${pending > 0 ? `(${pending}) ` : ''}Contact Point${cp ? ` — ${cp.id}` : ''}`;
  }, [pending, cp]);

  const go = (v: ViewName): void => {
    showView(ctx.store, v);
    main.current?.focus();
  };
  const onKey = (e: KeyboardEvent<HTMLDivElement>): void => {
    if (!e.altKey || e.ctrlKey || e.metaKey) return;
    const v = VIEWS.find((x) => x.key === e.key);
    if (v) {
      e.preventDefault();
      go(v.name);
    }
  };

  // A refused token: no dashboard (its zeros would read as data), only what to do.
  if (connection.state === 'unauthorized') return <AdminUrlHelp title="Not allowed in" detail={connection.detail ?? 'The contact point refused this page.'} />;

  return (
    <div className="app" onKeyDown={onKey}>
      <a className="skip" href="#main">
        Skip to content
      </a>
      <header className="topbar">
        <div className="brand">
          <img src="./favicon.svg" alt="" width={22} height={22} />
          <span>Contact Point</span>
          {cp ? <span className="cp-id mono">{cp.id}</span> : null}
        </div>
        <TunnelPill />
      </header>
      {cp?.embeddedRelay && view !== 'settings' ? (
        <div className="banner demo" role="note" data-testid="demo-banner">
          Running on the <strong>embedded local demo relay</strong>: only this computer can reach it.{' '}
          {ctx.api.settings ? (
            <>
              Set a real relay in{' '}
              <button type="button" className="link" onClick={() => go('settings')}>
                Settings
              </button>
              .
            </>
          ) : (
            // Headless (npm start, serve): a browser cannot restart the process; say what to run.
            <>
              For a real office, run <code>contact-point serve --relay wss://… --id … --credential-file …</code> instead;{' '}
              <button type="button" className="link" onClick={() => go('settings')}>
                Settings
              </button>{' '}
              prints the exact command.
            </>
          )}
        </div>
      ) : null}
      <ConnectionBanner />
      <div className="body">
        <nav aria-label="Views" className="nav">
          <ul>
            {VIEWS.map((v) => (
              <li key={v.name}>
                <button type="button" aria-current={view === v.name ? 'page' : undefined} aria-keyshortcuts={`Alt+${v.key}`} onClick={() => go(v.name)}>
                  {v.label}
                  {v.name === 'peers' && pending > 0 ? (
                    <span className="badge" aria-label={`${pending} pending`} data-testid="pending-badge">
                      {pending}
                    </span>
                  ) : null}
                  {v.name === 'ports' && openPorts > 0 ? (
                    <span className="badge neutral" aria-label={`${openPorts} open`}>
                      {openPorts}
                    </span>
                  ) : null}
                </button>
              </li>
            ))}
          </ul>
          <p className="muted keys">Alt+1…6 switches views</p>
        </nav>
        <main id="main" ref={main} tabIndex={-1}>
          {view === 'peers' ? (
            <PeersView />
          ) : view === 'flow' ? (
            <FlowView />
          ) : view === 'tunnel' ? (
            <TunnelView />
          ) : view === 'ports' ? (
            <PortsView />
          ) : view === 'audit' ? (
            <AuditView />
          ) : (
            <SettingsView />
          )}
        </main>
      </div>
      <Notices />
    </div>
  );
}
