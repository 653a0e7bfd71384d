import type { Logger } from '../runtime/logger.js';
import { MetricsServer, type MetricsSource } from '../runtime/metrics.js';
import { flagHelp } from './args.js';
import { UsageError } from './errors.js';
import { isLoopbackHost, listenError, listenFlag, type ListenFlag } from './listen.js';

/**
 * `--metrics HOST:PORT` on relay, serve and start: Prometheus metrics on a listener of their
 * own. Loopback only unless `--metrics-public` says otherwise, since the endpoint has no
 * authentication (as cloudflared's, NATS's and Tailscale's have none).
 */

export const metricsOptions = {
  metrics: { type: 'string' },
  'metrics-public': { type: 'boolean' },
} as const;

/** Help lines of --metrics and --metrics-public, descriptions starting at `column`. */
export function metricsFlagsHelp(column: number): string {
  const flag = (f: string, lines: string[]): string => flagHelp(column, f, lines);
  return [
    flag('--metrics HOST:PORT', ['serve Prometheus metrics at http://HOST:PORT/metrics, e.g.', '127.0.0.1:9464 (off by default; loopback only)']),
    flag('--metrics-public', ['allow a non-loopback --metrics address (the endpoint has no', 'authentication: restrict who reaches it with a firewall)']),
  ].join('\n');
}

/** The --metrics address, checked; undefined when metrics are off. */
export function metricsFlag(values: { metrics?: string | undefined; 'metrics-public'?: boolean | undefined }): ListenFlag | undefined {
  const isPublic = values['metrics-public'] ?? false;
  if (values.metrics === undefined) {
    if (isPublic) throw new UsageError('--metrics-public needs --metrics HOST:PORT (the address to serve metrics on)');
    return undefined;
  }
  const l = listenFlag('--metrics', values.metrics, '');
  if (!isPublic && !isLoopbackHost(l.listen.host)) {
    throw new UsageError(
      `--metrics "${values.metrics}": ${l.listen.host} is not a loopback address. The metrics endpoint has no authentication ` +
        `and tells whoever reaches it which offices are connected and how much traffic they move, so it stays on this machine ` +
        `by default (scrape it from a Prometheus on this host or through an SSH tunnel). To serve it there anyway, add --metrics-public`,
    );
  }
  return l;
}

/** Starts the metrics listener when --metrics was given (a bind failure is a CliError naming the flag). */
export async function startMetrics(flag: ListenFlag | undefined, sources: readonly MetricsSource[], logger: Logger): Promise<MetricsServer | undefined> {
  if (!flag) return undefined;
  const server = new MetricsServer({ host: flag.listen.host, port: flag.listen.port, sources, logger });
  try {
    await server.start();
  } catch (err: unknown) {
    throw listenError(err, flag);
  }
  if (!isLoopbackHost(flag.listen.host)) {
    logger.warn('metrics endpoint on a non-loopback address: it has no authentication; let only your Prometheus reach it', { url: server.url });
  } else logger.info('metrics endpoint listening', { url: server.url });
  return server;
}
