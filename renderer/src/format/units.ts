/** Human units for the dashboard: bytes, rates, durations, clock times. */

const BYTE_UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'] as const;

export function formatBytes(n: number): string {
  let v = n;
  let i = 0;
  while (v >= 1024 && i < BYTE_UNITS.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v.toFixed(0) : v < 10 ? v.toFixed(1) : v.toFixed(0)} ${BYTE_UNITS[i]}`;
}

export function formatCount(n: number): string {
  return n.toLocaleString('en-US');
}

export function formatRate(perSec: number, unit: 'msgs' | 'bytes'): string {
  if (unit === 'bytes') return `${formatBytes(perSec)}/s`;
  return `${perSec >= 100 ? Math.round(perSec).toLocaleString('en-US') : perSec.toFixed(perSec >= 10 ? 0 : 1)} msg/s`;
}

/** 3 h 12 min, 4 min 5 s, 12 s */
export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60} s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ${m % 60} min`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}

export function formatClock(at: number): string {
  const d = new Date(at);
  const p = (n: number, w = 2): string => String(n).padStart(w, '0');
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

export function formatDateTime(at: number | undefined): string {
  if (!at) return '—';
  const d = new Date(at);
  const p = (n: number): string => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`;
}

/** `2026-12-02 01:58:07`, local time: when an admin decision was made. */
export function formatTimestamp(at: number): string {
  const d = new Date(at);
  const p = (n: number): string => String(n).padStart(2, '0');
  return `${formatDateTime(at)}:${p(d.getSeconds())}`;
}

export function formatAgo(at: number | undefined, now: number): string {
  if (!at) return '—';
  const d = now - at;
  if (d < 5_000) return 'just now';
  return `${formatDuration(d)} ago`;
}
