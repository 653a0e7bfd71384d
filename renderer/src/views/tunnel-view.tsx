import { useState } from 'react';
import type { DirectView, TunnelView as Tunnel } from '../../../core/admin/contract.js';
import { ConfirmDialog, type ConfirmRequest } from '../components/confirm-dialog';
import { useNow } from '../components/use-now';
import { keepaliveText, tunnelSlotText } from '../../../core/admin/tunnel-slots.js';
import { formatBytes, formatClock, formatCount, formatDuration } from '../format/units';
import { reconnectTunnel } from '../store/commands';
import { useApp, useCtx } from '../store/context';

/** One sentence on where the tunnel stands and why. */
export function tunnelSentence(t: Tunnel, now: number): string {
  if (t.relayUrl === '') return 'No relay: this contact point runs in direct mode only (external peers connect to it directly).';
  if (t.idInUse !== undefined && t.state !== 'connected') {
    // Two contact points with one credential: this one is kept off while the other is alive.
    const wait = t.nextRetryAt !== undefined ? Math.max(0, Math.ceil((t.nextRetryAt - now) / 1000)) : undefined;
    return (
      `Another running contact point holds this id at the relay: ${t.idInUse}. ` +
      `This one stays off while that one is alive${wait === undefined || wait === 0 ? '' : ` and tries again in ${wait} s`}. ` +
      'Stop one of the two, or give each its own credential.'
    );
  }
  switch (t.state) {
    case 'connected':
      return `Connected to the relay${t.connectedAt ? ` for ${formatDuration(now - t.connectedAt)}` : ''}.`;
    case 'connecting':
      return 'Opening the tunnel to the relay…';
    case 'reconnecting': {
      const wait = t.nextRetryAt !== undefined ? Math.max(0, Math.ceil((t.nextRetryAt - now) / 1000)) : undefined;
      // A wrong URL, an untrusted certificate or a refusal does not go away by waiting: say so.
      const stuck = t.lastErrorKind !== undefined && t.lastErrorKind !== 'network' ? ' Waiting will not fix this; it keeps trying slowly.' : '';
      return `Tunnel ${t.everConnected ? 'lost' : 'not up'}${t.lastError ? `: ${t.lastError}` : ''}.${stuck} ${wait === undefined ? 'Retrying…' : wait === 0 ? 'Retrying now…' : `Next try in ${wait} s.`}`;
    }
    case 'offline':
      return `Offline${t.lastError ? `: ${t.lastError}` : ''}.`;
  }
}

/** What Reconnect now asks first while the tunnel is up: with two tunnels up they go one at a time (Gateway.reconnectNow). */
export function reconnectPrompt(t: Tunnel): string {
  const both = (t.tunnels ?? []).filter((x) => x.state === 'connected').length > 1;
  const open = `messages in flight are retried by their senders, and open port streams (${t.peersServed} peer${t.peersServed === 1 ? '' : 's'} served) are reset`;
  return both
    ? `Both tunnels are up. Reconnecting drops them one at a time, the second once the first is back, so the office stays reachable; on each, ${open}.`
    : `The tunnel is up. Reconnecting drops it for a moment: ${open}.`;
}

/** The HTTP proxy the tunnel goes through; "none" without one ("direct" would read as direct mode). */
export function proxyText(t: Tunnel): string {
  return t.proxy ?? 'none';
}

export function TunnelView() {
  const ctx = useCtx();
  const t = useApp((s) => s.tunnel);
  const busy = useApp((s) => s.reconnectBusy);
  const log = useApp((s) => s.tunnelLog);
  const direct = useApp((s) => s.direct);
  const now = useNow(500);
  const [confirm, setConfirm] = useState<ConfirmRequest>();
  if (!t) return <p className="empty">Waiting for the contact point…</p>;
  const saved = Math.max(0, t.peersServed - 1);
  // A healthy tunnel carries live messages and port streams: dropping it is asked first.
  const reconnect = (): void => {
    if (t.state !== 'connected') {
      void reconnectTunnel(ctx);
      return;
    }
    setConfirm({
      title: 'Reconnect a healthy tunnel?',
      body: (
        <p>{reconnectPrompt(t)}</p>
      ),
      confirmLabel: 'Reconnect',
      danger: true,
      onConfirm: () => void reconnectTunnel(ctx),
    });
  };
  return (
    <section aria-labelledby="tunnel-title" className="view">
      <header className="view-head">
        <h1 id="tunnel-title">Tunnel</h1>
        <button type="button" className="primary" disabled={busy} onClick={reconnect}>
          Reconnect now
        </button>
      </header>
      <div className={`tunnel-state ${t.state}`} role="status" aria-live="polite" data-testid="tunnel-state" data-state={t.state}>
        <span className={`dot big ${t.state}`} aria-hidden="true" />
        <div>
          <strong className="state-name">{t.state}</strong>
          <p data-testid={t.idInUse !== undefined && t.state !== 'connected' ? 'tunnel-id-in-use' : undefined}>{tunnelSentence(t, now)}</p>
        </div>
      </div>
      <dl className="facts">
        <div>
          <dt>Relay</dt>
          <dd className="mono">
            {t.relayUrl}
            {t.node !== undefined ? <span className="muted"> · node {t.node}</span> : null}
          </dd>
        </div>
        {t.tunnels ? (
          <div>
            <dt>Tunnels</dt>
            <dd data-testid="tunnel-slots">
              {t.tunnels.map((s) => (
                <span key={s.slot} className="mono slot-line" data-state={s.state}>
                  <span className={`dot ${s.state}`} aria-hidden="true" /> {tunnelSlotText(s)}
                </span>
              ))}
            </dd>
          </div>
        ) : null}
        <div>
          <dt>Session</dt>
          <dd className="mono">{t.session ?? '—'}</dd>
        </div>
        <div>
          <dt>Uptime</dt>
          <dd>{t.state === 'connected' && t.connectedAt ? formatDuration(now - t.connectedAt) : '—'}</dd>
        </div>
        <div>
          <dt>Round trip</dt>
          <dd>{t.rttMs !== undefined ? `${t.rttMs.toFixed(t.rttMs < 10 ? 1 : 0)} ms` : '—'}</dd>
        </div>
        <div>
          <dt>Reconnects</dt>
          <dd>{formatCount(t.reconnects)}</dd>
        </div>
        <div>
          <dt>Last error</dt>
          <dd data-testid="tunnel-last-error">
            {t.lastError !== undefined ? (
              <>
                {t.lastError}
                {t.lastErrorAt !== undefined ? <span className="muted"> · at {formatClock(t.lastErrorAt)} ({formatDuration(now - t.lastErrorAt)} ago)</span> : null}
              </>
            ) : (
              'none since the contact point started'
            )}
          </dd>
        </div>
        <div>
          <dt>Received</dt>
          <dd>
            {formatBytes(t.bytesIn)} · {formatCount(t.framesIn)} frames
          </dd>
        </div>
        <div>
          <dt>Sent</dt>
          <dd>
            {formatBytes(t.bytesOut)} · {formatCount(t.framesOut)} frames
          </dd>
        </div>
        <div>
          <dt>Peers served</dt>
          <dd>
            {formatCount(t.peersServed)} over {t.tunnels ? 'the tunnels' : 'one tunnel'}
            <span className="muted"> · {formatCount(saved)} relay connection{saved === 1 ? '' : 's'} saved</span>
          </dd>
        </div>
        <div>
          <dt>Keepalive</dt>
          <dd data-testid="tunnel-keepalive">{keepaliveText(t)}</dd>
        </div>
        <div>
          <dt>Proxy</dt>
          <dd className="mono">{proxyText(t)}</dd>
        </div>
      </dl>
      {direct ? <DirectSessions direct={direct} now={now} /> : null}
      <h2>Recent states</h2>
      <ol className="state-log" data-testid="tunnel-log">
        {[...log].reverse().map((e) => (
          <li key={`${e.at}-${e.state}`}>
            <span className="mono muted">{formatClock(e.at)}</span> <span className={`dot ${e.state}`} aria-hidden="true" /> {e.state}
            {e.detail && e.state !== 'connected' ? <span className="muted"> — {e.detail}</span> : null}
          </li>
        ))}
      </ol>
      <ConfirmDialog request={confirm} onClose={() => setConfirm(undefined)} />
    </section>
  );
}

/** Direct mode beside the tunnel: the contact point's own listener and who is connected to it (seed 000 [0040]). */
function DirectSessions({ direct, now }: { direct: DirectView; now: number }) {
  return (
    <section aria-labelledby="direct-title" className="direct" data-testid="direct">
      <h2 id="direct-title">Direct listener</h2>
      <p className="muted">
        External peers and operators connect to this contact point itself here, without a relay, as <span className="mono">NAME@{direct.domain}</span>. Credentials:{' '}
        <span className="mono">contact-point credential add|list|remove</span>.
      </p>
      <dl className="facts">
        <div>
          <dt>Listening</dt>
          <dd className="mono" data-testid="direct-url">
            {direct.url}
          </dd>
        </div>
        <div>
          <dt>Encryption</dt>
          <dd>{direct.tls ? 'TLS (wss)' : 'none (plain ws)'}</dd>
        </div>
        <div>
          <dt>Credentials</dt>
          <dd>{formatCount(direct.credentials)}</dd>
        </div>
        <div>
          <dt>Sessions</dt>
          <dd data-testid="direct-count">{formatCount(direct.sessions.length)}</dd>
        </div>
      </dl>
      {direct.sessions.length === 0 ? (
        <p className="empty">No direct sessions.</p>
      ) : (
        <div className="table-wrap">
          <table className="peers" data-testid="direct-sessions">
            <thead>
              <tr>
                <th scope="col">Address</th>
                <th scope="col">Session</th>
                <th scope="col">Kind</th>
                <th scope="col">From</th>
                <th scope="col">Connected</th>
              </tr>
            </thead>
            <tbody>
              {direct.sessions.map((s) => (
                <tr key={s.session} data-session={s.session}>
                  <th scope="row" className="mono">
                    {s.address}
                  </th>
                  <td className="mono">{s.session}</td>
                  <td>{s.operator ? 'operator' : 'peer'}</td>
                  <td className="mono">{s.remote}</td>
                  <td>{formatDuration(Math.max(0, now - s.since))}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
