import type { ReactNode } from 'react';
import type { ClusterView, ExposureView, ExternalSessionView, OfficeView, RefusalView, RelayStatusView, TrafficView } from '../../../core/admin/relay-contract';
import { useNow } from '../components/use-now';
import { Capabilities } from './capabilities';
import { formatBytes, formatCount, formatDuration } from '../format/units';
import type { PollState } from './status-poller';

/** Refusals the dashboard lists (the relay keeps up to 200; `relay status --json` has them all). */
const REFUSALS_SHOWN = 50;
/** Offices the cluster section places on their nodes (`relay status --cluster` lists them all). */
const CLUSTER_OFFICES_SHOWN = 200;

function Section({ title, count, children, label }: { title: string; count: number; children: ReactNode; label: string }) {
  return (
    <section aria-label={label} className="relay-section">
      <h2>
        {title} <span className="count">{count}</span>
      </h2>
      {children}
    </section>
  );
}

function Table({ head, children, label }: { head: readonly (string | { text: string; num: true })[]; children: ReactNode; label: string }) {
  return (
    <div className="table-wrap">
      <table className="peers" aria-label={label}>
        <thead>
          <tr>
            {head.map((h) => (typeof h === 'string' ? <th key={h}>{h}</th> : <th key={h.text} className="num">{h.text}</th>))}
          </tr>
        </thead>
        <tbody>{children}</tbody>
      </table>
    </div>
  );
}

function Traffic({ t, dir }: { t: TrafficView; dir: 'in' | 'out' }) {
  const frames = dir === 'in' ? t.framesIn : t.framesOut;
  const bytes = dir === 'in' ? t.bytesIn : t.bytesOut;
  return (
    <td className="num" title={`${formatCount(frames)} frames, ${formatCount(bytes)} bytes`}>
      {formatBytes(bytes)}
      <span className="sub">
        {formatCount(frames)} {frames === 1 ? 'frame' : 'frames'}
      </span>
    </td>
  );
}

const rtt = (ms: number | undefined): string => (ms === undefined ? '–' : `${ms < 10 ? ms.toFixed(1) : Math.round(ms)} ms`);
const address = (a: string): string => a.replace(/\/.*$/, '');

function OfficeRow({ o, now }: { o: OfficeView; now: number }) {
  return (
    <tr data-testid={`office-${o.id}`}>
      <td>
        <span className="peer-name">
          <span className="dot on" aria-hidden="true" />
          {o.id}
        </span>
        <span className="fingerprint">{o.env.software ?? 'software not given'}</span>
      </td>
      <td>
        {o.env.host ?? '–'}
        <span className="sub mono">{o.env.addresses.length > 0 ? o.env.addresses.map(address).join(', ') : 'no LAN addresses given'}</span>
      </td>
      <td className="mono">{o.remote}</td>
      <td>{formatDuration(now - o.since)}</td>
      <td className="num">{rtt(o.rttMs)}</td>
      <td className="num">{formatCount(o.peers)}</td>
      <td className="num">{formatCount(o.streams)}</td>
      <Traffic t={o.traffic} dir="in" />
      <Traffic t={o.traffic} dir="out" />
      <td>
        <Capabilities list={o.env.capabilities} mediation={o.mediation} />
      </td>
    </tr>
  );
}

function SessionRow({ e, now }: { e: ExternalSessionView; now: number }) {
  return (
    <tr data-testid={`session-${e.name}`} data-session={e.session}>
      <td>
        <span className="peer-name">{e.address}</span>
        {/* One credential may hold several sessions (issue 18): the session id tells them apart. */}
        <span className="fingerprint">
          {e.software ?? 'software not given'} · session {e.session}
        </span>
      </td>
      <td>{e.rights.join(', ')}</td>
      <td className="mono">{e.remote ?? '–'}</td>
      <td>{formatDuration(now - e.since)}</td>
      <td className="num">{rtt(e.rttMs)}</td>
      <Traffic t={e.traffic} dir="in" />
      <Traffic t={e.traffic} dir="out" />
      <td>{e.operator ? `${e.operator.ports} ports, ${e.operator.exposures} exposures, ${e.operator.streams} streams` : <span className="muted">messages only</span>}</td>
    </tr>
  );
}

function ExposureRow({ x }: { x: ExposureView }) {
  return (
    <tr data-testid={`exposure-${x.publicPort}`}>
      <td className="num mono strong">{x.publicPort}</td>
      <td>{x.proto.toUpperCase()}</td>
      <td>{x.cp}</td>
      <td className="mono">{x.target}</td>
      <td>{x.operator}</td>
      <td className="num">{x.proto === 'tcp' ? `${x.active} / ${x.maxConnections}` : '–'}</td>
      <td className="num">{formatCount(x.connections)}</td>
      <td className={`num${x.refused > 0 ? ' warn' : ''}`}>{formatCount(x.refused)}</td>
    </tr>
  );
}

function RefusalRow({ r }: { r: RefusalView }) {
  return (
    <tr data-testid="refusal">
      <td className="mono">{new Date(r.at).toLocaleTimeString('en-GB')}</td>
      <td>{r.kind}</td>
      <td>
        <span className="chip">
          {r.name} ({r.code})
        </span>
        {r.count > 1 ? <span className="muted"> ×{formatCount(r.count)}</span> : null}
      </td>
      <td>{r.who}</td>
      <td className="mono">{r.address ?? '–'}</td>
      <td className="reason wrap">{r.reason}</td>
    </tr>
  );
}

/** A relay cluster node (issue 12): the nodes, and which node holds which office's tunnel, as this node sees them. */
function Cluster({ c }: { c: ClusterView }) {
  const shown = c.offices.slice(0, CLUSTER_OFFICES_SHOWN);
  // Where clients reach each node (relay --advertise-url, exposure placement): a column once any node has one.
  const urls = c.nodes.some((n) => n.url !== undefined);
  return (
    <Section title="Cluster" count={c.nodes.length} label="Cluster">
      <p className="muted">
        This relay is node <strong className="mono">{c.node}</strong> of a cluster joined by NATS. Offices below are held by whichever node their tunnel landed on;
        messages to them from here cross NATS.
      </p>
      {c.connected ? null : (
        <p className="banner error" role="alert">
          <strong>Cut off from NATS.</strong> This node has closed its tunnels so their offices re-home to another node; what it shows of the other nodes is out of date.
        </p>
      )}
      <div className="cluster-tables">
        <Table label="Cluster nodes" head={['Node', { text: 'Offices', num: true }, { text: 'External sessions', num: true }, ...(urls ? ['Advertised URL'] : [])]}>
          {c.nodes.map((n) => (
            <tr key={n.node} data-testid={`node-${n.node}`}>
              <td>
                <span className="mono strong">{n.node}</span>
                {n.node === c.node ? <span className="tag">this node</span> : null}
              </td>
              <td className="num">{formatCount(n.offices)}</td>
              <td className="num">{formatCount(n.externals)}</td>
              {urls ? <td className="mono">{n.url ?? '—'}</td> : null}
            </tr>
          ))}
        </Table>
        {c.offices.length === 0 ? (
          <p className="empty">No office's tunnel is up on any node.</p>
        ) : (
          <Table label="Where each office is" head={['Office', 'Node']}>
            {shown.map((o) => (
              <tr key={`${o.id}@${o.node}`} data-testid={`placed-${o.id}`}>
                <td>
                  <span className="peer-name">
                    <span className="dot on" aria-hidden="true" />
                    {o.id}
                  </span>
                </td>
                <td className="mono">
                  {o.node}
                  {o.node === c.node ? <span className="tag">this node</span> : null}
                </td>
              </tr>
            ))}
          </Table>
        )}
      </div>
      {c.offices.length > shown.length ? (
        <p className="muted">
          {formatCount(c.offices.length - shown.length)} more offices not shown; <span className="mono">contact-point relay status --cluster …</span> lists them all.
        </p>
      ) : null}
    </Section>
  );
}

function Totals({ s }: { s: RelayStatusView }) {
  const items: [string, number, string | undefined][] = [
    ['Offices', s.totals.offices, 'ok'],
    ['External sessions', s.totals.externals, undefined],
    ['Operators', s.totals.operators, undefined],
    ['Exposures', s.totals.exposures, undefined],
    ['Messages routed', s.totals.routed, undefined],
    ...(s.cluster ? [['Forwarded to other nodes', s.totals.forwarded, undefined] as [string, number, string | undefined]] : []),
    ['Refusals', s.refusals.total, s.refusals.total > 0 ? 'bad' : undefined],
  ];
  return (
    <dl className="totals" aria-label="Totals">
      {items.map(([label, n, cls]) => (
        <div key={label}>
          <dt>{label}</dt>
          <dd className={cls}>{formatCount(n)}</dd>
        </div>
      ))}
    </dl>
  );
}

function Freshness({ state, now }: { state: PollState; now: number }) {
  if (state.kind === 'live') {
    return (
      <span className="pill connected" data-testid="live-pill" title={`updated ${formatDuration(now - state.at)} ago; every 2 s`}>
        <span className="dot connected" aria-hidden="true" />
        live
      </span>
    );
  }
  if (state.kind === 'lost') {
    return (
      <span className="pill offline" data-testid="live-pill">
        <span className="dot offline" aria-hidden="true" />
        {state.at === undefined ? 'no answer' : `stale, ${formatDuration(now - state.at)} old`}
      </span>
    );
  }
  return null;
}

export function Dashboard({ state }: { state: PollState }) {
  const now = useNow(1_000);
  const s = state.kind === 'live' || state.kind === 'lost' ? state.status : undefined;
  // Ages are measured on the relay's clock, moved on by the time since it answered.
  const relayNow = s && (state.kind === 'live' || state.kind === 'lost') && state.at !== undefined ? s.relay.now + (now - state.at) : now;
  return (
    <div className="app relay-dashboard">
      <header className="topbar">
        <div className="brand">
          <img src="./favicon.svg" alt="" width="22" height="22" />
          Contact Point relay
          {s ? <span className="cp-id">{s.relay.name}</span> : null}
        </div>
        <Freshness state={state} now={now} />
      </header>
      {state.kind === 'connecting' ? <div className="banner info" role="status">Asking the relay for its status…</div> : null}
      {state.kind === 'unauthorized' ? (
        <div className="banner error" role="alert">
          <strong>Not allowed in.</strong> {state.detail}
        </div>
      ) : null}
      {state.kind === 'lost' ? (
        <div className="banner error" role="alert">
          <strong>No answer from the relay</strong> ({state.detail}). Retrying every 2 s; what you see may be out of date.
        </div>
      ) : null}
      {s ? (
        <main className="view">
          <p className="muted relay-facts">
            <span className="mono">{s.relay.url}</span> · version {s.relay.version} · up {formatDuration(relayNow - s.relay.startedAt)}
            {s.relay.udpPort ? ` · UDP service port ${s.relay.udpPort}` : ''} · {formatCount(s.totals.sockets)} sockets
          </p>
          <Totals s={s} />
          {s.cluster ? <Cluster c={s.cluster} /> : null}
          <Section title="Offices" count={s.offices.length} label="Offices">
            {s.offices.length === 0 ? (
              <p className="empty">No office is connected. A contact point appears here when its tunnel is up (contact-point serve --relay …).</p>
            ) : (
              <Table label="Connected offices" head={['Office', 'Host and LAN addresses', 'From', 'Up', { text: 'RTT', num: true }, { text: 'Peers', num: true }, { text: 'Streams', num: true }, { text: 'In', num: true }, { text: 'Out', num: true }, 'Capabilities']}>
                {s.offices.map((o) => (
                  <OfficeRow key={o.id} o={o} now={relayNow} />
                ))}
              </Table>
            )}
          </Section>
          <Section title="External and operator sessions" count={s.externals.length} label="Sessions">
            {s.externals.length === 0 ? (
              <p className="empty">No external peer is connected.</p>
            ) : (
              <Table label="External sessions" head={['Address', 'Rights', 'From', 'Up', { text: 'RTT', num: true }, { text: 'In', num: true }, { text: 'Out', num: true }, 'Port mediation']}>
                {s.externals.map((e) => (
                  <SessionRow key={e.session} e={e} now={relayNow} />
                ))}
              </Table>
            )}
          </Section>
          <Section title="Exposures" count={s.exposures.length} label="Exposures">
            {s.exposures.length === 0 ? (
              <p className="empty">No public port is open (contact-point expose CP HOST:PORT opens one).</p>
            ) : (
              <Table label="Exposures" head={[{ text: 'Public port', num: true }, 'Proto', 'Office', 'LAN target', 'Operator', { text: 'Open', num: true }, { text: 'Connections', num: true }, { text: 'Refused', num: true }]}>
                {s.exposures.map((x) => (
                  <ExposureRow key={x.id} x={x} />
                ))}
              </Table>
            )}
          </Section>
          <Section title="Recent refusals" count={s.refusals.recent.length} label="Recent refusals">
            {s.refusals.notLogged > 0 ? (
              <p className="banner flood">
                {formatCount(s.refusals.notLogged)} refusals came faster than the relay logs them one by one; its log has them summed per code.
              </p>
            ) : null}
            {s.refusals.recent.length === 0 ? (
              <p className="empty">Nothing refused since the relay started.</p>
            ) : (
              <Table label="Recent refusals" head={['Time', 'Kind', 'Code', 'Who', 'From', 'Reason']}>
                {s.refusals.recent.slice(0, REFUSALS_SHOWN).map((r, i) => (
                  <RefusalRow key={`${r.at}-${i}`} r={r} />
                ))}
              </Table>
            )}
          </Section>
        </main>
      ) : null}
    </div>
  );
}
