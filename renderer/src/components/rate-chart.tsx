import type { RatePoint } from '../store/flow-slice';
import { formatRate } from '../format/units';

const W = 600;
const H = 90;

function path(points: readonly RatePoint[], pick: (p: RatePoint) => number, max: number, t0: number, span: number): string {
  return points
    .map((p, i) => {
      const x = ((p.at - t0) / span) * W;
      const y = H - (pick(p) / max) * (H - 6) - 2;
      return `${i === 0 ? 'M' : 'L'}${x.toFixed(1)},${y.toFixed(1)}`;
    })
    .join(' ');
}

/** One sparkline: the last minute of a rate, with its current and peak value. */
function Spark({ points, pick, unit, title, className }: { points: readonly RatePoint[]; pick: (p: RatePoint) => number; unit: 'msgs' | 'bytes'; title: string; className: string }) {
  const last = points.at(-1);
  const max = Math.max(1, ...points.map(pick));
  const t1 = last?.at ?? 0;
  const span = 60_000;
  const t0 = t1 - span;
  const shown = points.filter((p) => p.at >= t0);
  const d = shown.length > 1 ? path(shown, pick, max, t0, span) : '';
  const current = last ? formatRate(pick(last), unit) : '—';
  return (
    <figure className={`spark ${className}`}>
      <figcaption>
        <span className="spark-title">{title}</span>
        <strong data-testid={`rate-${unit}`}>{current}</strong>
        <span className="muted">peak {formatRate(max === 1 && !points.some((p) => pick(p) > 0) ? 0 : max, unit)}</span>
      </figcaption>
      <svg viewBox={`0 0 ${W} ${H}`} preserveAspectRatio="none" role="img" aria-label={`${title}: ${current} now, last minute`}>
        <line x1="0" y1={H - 1} x2={W} y2={H - 1} className="axis" />
        {d ? <path d={`${d} L${W},${H} L${((shown[0]!.at - t0) / span) * W},${H} Z`} className="area" /> : null}
        {d ? <path d={d} className="line" /> : null}
      </svg>
    </figure>
  );
}

export function RateChart({ points }: { points: readonly RatePoint[] }) {
  return (
    <div className="rate-chart">
      <Spark points={points} pick={(p) => p.msgsPerSec} unit="msgs" title="Messages" className="msgs" />
      <Spark points={points} pick={(p) => p.bytesPerSec} unit="bytes" title="Bytes" className="bytes" />
    </div>
  );
}
