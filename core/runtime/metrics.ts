import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import type * as PromClient from 'prom-client';
import type { Registry } from 'prom-client';
import { createGuardedServer, refuseUpgrade, type HttpLimits } from './http-guard.js';
import { requestPath } from './health.js';
import type { Logger } from './logger.js';
import { closeServer, isLoopbackAddress, listen, loopbackHostAllowed } from './server-lifecycle.js';

/**
 * Prometheus metrics on a listener of their own (`--metrics HOST:PORT`), as cloudflared and
 * frp do: GET /metrics in the Prometheus text format, nothing else. The series are filled when
 * scraped, from counters the services keep as plain numbers (core/relay/stats.ts,
 * core/contact-point/stats.ts): no labelled series is touched on a message path.
 */

export const METRICS_PATH = '/metrics';
/** Prefix of every series: ours (`contact_point_relay_*`, `contact_point_tunnel_*`) and Node's process metrics. */
export const METRICS_PREFIX = 'contact_point_';
/** Connections the metrics listener takes at once (a scraper needs one), in total and per address. */
export const METRICS_MAX_CONNECTIONS = 16;
export const METRICS_MAX_CONNECTIONS_PER_ADDRESS = 8;
/** A scrape must send its request within this time of connecting. */
export const METRICS_HEADERS_TIMEOUT_MS = 5_000;

let promClient: typeof PromClient | undefined;

/**
 * prom-client, loaded on first use: it takes ~90 ms to load on these hosts, which every CLI
 * command would pay at startup, and only a process with --metrics needs it.
 */
function prom(): typeof PromClient {
  return (promClient ??= createRequire(import.meta.url)('prom-client') as typeof PromClient);
}

/** One group of series and what fills them: `refresh` runs once per scrape, before they are read. */
export interface MetricsSource {
  readonly registry: Registry;
  refresh(): void;
}

/** Sets each series of a metric to its value now (`labels` {} for an unlabelled one). */
type Fill<L extends string> = (set: (labels: Partial<Record<L, string>>, value: number) => void) => void;

/**
 * A registry of our own (never prom-client's global one, so two relays in one process do not
 * collide) whose series are all read at scrape time: each metric's collect() starts from
 * empty and sets what `fill` reports, so a label value that is gone (an office that left)
 * leaves the output too, and a value not known now (the RTT of a tunnel that is down) has no
 * sample.
 */
export class MetricSet implements MetricsSource {
  readonly registry: Registry = new (prom().Registry)();

  constructor(private readonly onRefresh: () => void) {}

  refresh(): void {
    this.onRefresh();
  }

  gauge<L extends string = never>(name: string, help: string, labelNames: readonly L[], fill: Fill<L>): void {
    const config = { name: METRICS_PREFIX + name, help, labelNames, registers: [this.registry] };
    new (prom().Gauge)({
      ...config,
      collect() {
        refill(this, labelNames, fill, (labels, v) => this.set(labels, v));
      },
    });
  }

  /** A counter read from a running total (it only grows while the process lives). */
  counter<L extends string = never>(name: string, help: string, labelNames: readonly L[], fill: Fill<L>): void {
    const config = { name: METRICS_PREFIX + name, help, labelNames, registers: [this.registry] };
    new (prom().Counter)({
      ...config,
      collect() {
        refill(this, labelNames, fill, (labels, v) => this.inc(labels, v));
      },
    });
  }
}

/** A metric's samples from empty, as `fill` reports them; an unlabelled one `fill` says nothing about has no sample. */
function refill<L extends string>(
  metric: { reset(): void; remove(labels: Partial<Record<L, string>>): void },
  labelNames: readonly L[],
  fill: Fill<L>,
  put: (labels: Partial<Record<L, string>>, value: number) => void,
): void {
  metric.reset();
  let any = false;
  fill((labels, v) => {
    any = true;
    put(labels, v);
  });
  if (!any && labelNames.length === 0) metric.remove({}); // not known now: no sample rather than a made-up 0
}

let processRegistry: Registry | undefined;

/**
 * Node's process metrics (CPU, memory, heap spaces, event-loop lag, GC durations, handles),
 * once per process: prom-client starts an event-loop delay monitor and a GC observer for
 * them that cannot be stopped, so every metrics listener of the process (a relay and a
 * contact point in `start`, or several in a test) shares this one registry.
 */
export function processMetrics(): Registry {
  if (!processRegistry) {
    processRegistry = new (prom().Registry)();
    prom().collectDefaultMetrics({ register: processRegistry, prefix: METRICS_PREFIX });
  }
  return processRegistry;
}

/** The whole scrape: process metrics, then each source's series, refreshed first. */
export async function scrape(sources: readonly MetricsSource[]): Promise<string> {
  for (const s of sources) s.refresh();
  const parts = [await processMetrics().metrics()];
  for (const s of sources) parts.push(await s.registry.metrics());
  return parts.join('\n');
}

export interface MetricsServerOptions {
  readonly host: string;
  readonly port: number;
  readonly sources: readonly MetricsSource[];
  readonly logger: Logger;
  /** defaults: METRICS_MAX_CONNECTIONS, METRICS_MAX_CONNECTIONS_PER_ADDRESS, METRICS_HEADERS_TIMEOUT_MS */
  readonly http?: HttpLimits;
}

/**
 * The metrics listener: GET /metrics answers the scrape; any other path is 404, any other
 * method 405, an upgrade 404. It has no authentication (like the metrics endpoints of
 * cloudflared, NATS and Tailscale), so the CLI binds it to loopback unless told otherwise.
 * Plain requests go through http-guard: bounded connections, timeouts, no body read.
 */
export class MetricsServer {
  private server: Server | undefined;
  private boundUrl = '';
  /** set when bound to loopback: the Host header must then name it */
  private loopback: { readonly port: number; readonly urlHost: string } | undefined;

  constructor(private readonly opts: MetricsServerOptions) {}

  /** `http://HOST:PORT/metrics` once started. */
  get url(): string {
    return this.boundUrl;
  }

  async start(): Promise<string> {
    const server = createGuardedServer({
      limits: {
        maxConnections: METRICS_MAX_CONNECTIONS,
        maxConnectionsPerAddress: METRICS_MAX_CONNECTIONS_PER_ADDRESS,
        headersTimeoutMs: METRICS_HEADERS_TIMEOUT_MS,
        ...this.opts.http,
      },
      onRequest: this.onRequest,
      onUpgrade: (_req, socket) => refuseUpgrade(socket, 404, 'Not Found'),
    });
    this.server = server;
    const { address, urlHost } = await listen(server, this.opts.port, this.opts.host);
    this.boundUrl = `http://${urlHost}:${address.port}${METRICS_PATH}`;
    if (isLoopbackAddress(address.address)) this.loopback = { port: address.port, urlHost };
    return this.boundUrl;
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (server) await closeServer(server);
  }

  private readonly onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    // On loopback (the default) the Host must name it: a web page the operator visits could
    // otherwise rebind its name to 127.0.0.1 and read the series (office names, traffic).
    // Scrapers send the target's host:port; on another address (--metrics-public) any Host.
    const lo = this.loopback;
    if (lo && !loopbackHostAllowed(req.headers.host, lo.port, lo.urlHost)) {
      res.writeHead(421, { 'content-type': 'text/plain' });
      res.end('misdirected request: name this host as 127.0.0.1, localhost or [::1] with its port\n');
      return;
    }
    if (requestPath(req) !== METRICS_PATH) {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end(`not found: metrics are at ${METRICS_PATH}\n`);
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { 'content-type': 'text/plain', allow: 'GET, HEAD' });
      res.end('GET only\n');
      return;
    }
    scrape(this.opts.sources).then(
      (text) => {
        res.writeHead(200, { 'content-type': processMetrics().contentType, 'cache-control': 'no-store' });
        res.end(req.method === 'HEAD' ? undefined : text);
      },
      (err: unknown) => {
        this.opts.logger.error('metrics scrape failed', { error: err instanceof Error ? err.message : String(err) });
        res.writeHead(500, { 'content-type': 'text/plain' });
        res.end('metrics scrape failed\n');
      },
    );
  };
}
