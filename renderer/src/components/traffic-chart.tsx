import type { HistoryTraffic } from '../../../core/admin/contract.js';
import { formatCount, formatDateTime } from '../format/units';

const W = 600;
const H = 90;

/**
 * Messages per time bucket from the stored history (history:traffic), as stacked bars:
 * delivered, forwarded, refused. Used on a peer's page.
 */
export function TrafficChart({ traffic, title }: { traffic: HistoryTraffic; title: string }) {
  const n = traffic.delivered.length;
  const totals = traffic.delivered.map((d, i) => d + traffic.refused[i]! + traffic.forwarded[i]!);
  const max = Math.max(1, ...totals);
  const all = totals.reduce((a, b) => a + b, 0);
  const refused = traffic.refused.reduce((a, b) => a + b, 0);
  const w = W / n;
  const bar = (i: number, below: number, value: number, cls: string) => {
    if (value === 0) return null;
    const h = (value / max) * (H - 6);
    const y = H - 1 - ((below / max) * (H - 6)) - h;
    return <rect key={`${cls}${i}`} className={cls} x={i * w + w * 0.1} width={w * 0.8} y={y} height={h} />;
  };
  const end = traffic.since + traffic.bucketMs * n;
  return (
    <figure className="spark traffic-chart">
      <figcaption>
        <span className="spark-title">{title}</span>
        <strong data-testid="traffic-total">{formatCount(all)}</strong>
        <span className="muted">
          {formatCount(refused)} refused; {formatDateTime(traffic.since)} – {formatDateTime(end)}
        </span>
      </figcaption>
      <svg viewBox={`0 0 ${W} ${H}`} preserveAspectRatio="none" role="img" aria-label={`${title}: ${all} messages, ${refused} refused, from ${formatDateTime(traffic.since)} to ${formatDateTime(end)}`}>
        <line x1="0" y1={H - 1} x2={W} y2={H - 1} className="axis" />
        {totals.map((_, i) => [
          bar(i, 0, traffic.delivered[i]!, 'bar-delivered'),
          bar(i, traffic.delivered[i]!, traffic.forwarded[i]!, 'bar-forwarded'),
          bar(i, traffic.delivered[i]! + traffic.forwarded[i]!, traffic.refused[i]!, 'bar-refused'),
        ])}
      </svg>
    </figure>
  );
}
