import type { IncomingMessage, ServerResponse } from 'node:http';

/**
 * Health endpoints in the form load balancers and Kubernetes probes expect (the kube-apiserver's
 * own /livez and /readyz): plain GET/HEAD, no credentials, the status code is the answer.
 *
 * - `/livez`: the process answers HTTP: always 200. A liveness probe that fails restarts the
 *   process, so it must not fail for a reason a restart cannot fix (a relay that cannot reach
 *   anything is still alive).
 * - `/readyz`: 200 when the service can do its job, else 503 with a JSON reason. A readiness
 *   probe that fails takes the instance out of rotation until it passes again.
 * - `/healthz`: kept for what already polls it: always 200 with `ok: true` (alive), plus
 *   `ready`, `reason` and the service's own counts.
 *
 * Bodies carry no secrets: the relay's are on its public port.
 */
export const LIVE_PATH = '/livez';
export const READY_PATH = '/readyz';
export const HEALTH_PATH = '/healthz';
export const HEALTH_PATHS: readonly string[] = [LIVE_PATH, READY_PATH, HEALTH_PATH];

export interface Readiness {
  readonly ready: boolean;
  /** why not, in a sentence (absent when ready) */
  readonly reason?: string;
}

export interface HealthSource {
  readiness(): Readiness;
  /** extra fields of /healthz (counts; nothing secret) */
  details?(): Record<string, unknown>;
}

/** The path of a request without its query (`/readyz?verbose` is `/readyz`). */
export function requestPath(req: IncomingMessage): string {
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
}

/** True when `req` is a GET or HEAD of a health path (answered by answerHealth). */
export function isHealthRequest(req: IncomingMessage): boolean {
  return (req.method === 'GET' || req.method === 'HEAD') && HEALTH_PATHS.includes(requestPath(req));
}

/** Answers a health request (check isHealthRequest first). */
export function answerHealth(req: IncomingMessage, res: ServerResponse, source: HealthSource): void {
  const path = requestPath(req);
  let status = 200;
  let body: Record<string, unknown>;
  if (path === LIVE_PATH) {
    body = { live: true };
  } else {
    const r = source.readiness();
    if (path === READY_PATH) {
      status = r.ready ? 200 : 503;
      body = { ...r };
    } else {
      body = { ok: true, ...r, ...source.details?.() };
    }
  }
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(text) });
  res.end(req.method === 'HEAD' ? undefined : text);
}
