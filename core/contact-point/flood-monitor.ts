import type { FloodSourceView, FloodView } from '../admin/contract.js';
import type { Logger } from '../runtime/logger.js';
import type { RegistrarLimits } from './registrar.js';

/** A registration flood is over (and its notice goes) this long after the last dropped request. */
export const FLOOD_NOTICE_MS = 10 * 60_000;
/** Source addresses a flood summary lists, most dropped first; the rest are counted. */
export const MAX_FLOOD_SOURCES_LISTED = 8;
/** Source addresses one flood episode tracks; drops from further ones are counted under OTHER_SOURCES. */
export const MAX_FLOOD_SOURCES_TRACKED = 1_024;
/** The entry that counts the drops from sources past MAX_FLOOD_SOURCES_TRACKED. */
export const OTHER_SOURCES = 'other addresses';

interface Source {
  evicted: number;
  refused: number;
  lastAt: number;
}

interface Episode {
  readonly since: number;
  lastAt: number;
  evicted: number;
  refused: number;
  readonly sources: Map<string, Source>;
}

/**
 * What the admin learns of a registration flood: requests the flood limits dropped (evicted
 * undecided requests, refused new identities), summed per source address over one episode, so
 * a flood is one line in the GUI and the CLI and one warning in the log, not one per request.
 * An episode starts with the first drop and ends FLOOD_NOTICE_MS after the last one.
 */
export class FloodMonitor {
  private episode: Episode | undefined;
  /** the summary changed since the last takeChanged() */
  private changed = false;

  constructor(
    private readonly limits: RegistrarLimits,
    private readonly logger: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  /** Whether a flood episode is going on (a request was dropped within FLOOD_NOTICE_MS). */
  get active(): boolean {
    this.expire(this.now());
    return this.episode !== undefined;
  }

  /** Counts one dropped request from `source`; true when it starts a flood episode. */
  drop(source: string, kind: 'evicted' | 'refused'): boolean {
    const t = this.now();
    this.expire(t);
    const started = this.episode === undefined;
    const e = (this.episode ??= { since: t, lastAt: t, evicted: 0, refused: 0, sources: new Map<string, Source>() });
    e.lastAt = t;
    e[kind]++;
    const key = e.sources.has(source) || e.sources.size < MAX_FLOOD_SOURCES_TRACKED ? source : OTHER_SOURCES;
    let s = e.sources.get(key);
    if (!s) e.sources.set(key, (s = { evicted: 0, refused: 0, lastAt: t }));
    s.lastAt = t;
    s[kind]++;
    this.changed = true;
    if (started) {
      this.logger.warn('registration flood: dropping requests over the flood limit (one warning per flood; the admin GUI and `contact-point peers` show the counts)', {
        from: source,
        first: kind,
        perAddress: this.limits.maxUndecidedPerAddress,
        total: this.limits.maxUndecided,
        newPerMinute: this.limits.newPeersPerAddressPerMinute,
      });
    }
    return started;
  }

  /** Ends an episode that has been quiet for FLOOD_NOTICE_MS; true when the summary changed since the last call. */
  takeChanged(): boolean {
    this.expire(this.now());
    const c = this.changed;
    this.changed = false;
    return c;
  }

  view(): FloodView {
    const limits = {
      perAddress: this.limits.maxUndecidedPerAddress,
      total: this.limits.maxUndecided,
      newPerMinute: this.limits.newPeersPerAddressPerMinute,
    };
    this.expire(this.now());
    const e = this.episode;
    if (!e) return { dropped: 0, evicted: 0, refused: 0, since: undefined, lastAt: undefined, sources: [], otherSources: 0, limits };
    const sources: FloodSourceView[] = [...e.sources]
      .map(([address, s]) => ({ address, evicted: s.evicted, refused: s.refused, lastAt: s.lastAt }))
      // Most dropped first; the lump of untracked addresses last, so the first is a real address.
      .sort((a, b) => Number(a.address === OTHER_SOURCES) - Number(b.address === OTHER_SOURCES) || b.evicted + b.refused - (a.evicted + a.refused) || b.lastAt - a.lastAt);
    return {
      dropped: e.evicted + e.refused,
      evicted: e.evicted,
      refused: e.refused,
      since: e.since,
      lastAt: e.lastAt,
      sources: sources.slice(0, MAX_FLOOD_SOURCES_LISTED),
      otherSources: Math.max(0, sources.length - MAX_FLOOD_SOURCES_LISTED),
      limits,
    };
  }

  private expire(t: number): void {
    const e = this.episode;
    if (!e || t - e.lastAt < FLOOD_NOTICE_MS) return;
    this.episode = undefined;
    this.changed = true;
    const top = [...e.sources].sort((a, b) => b[1].evicted + b[1].refused - (a[1].evicted + a[1].refused))[0];
    this.logger.info('registration flood over', {
      dropped: e.evicted + e.refused,
      evicted: e.evicted,
      refused: e.refused,
      sources: e.sources.size,
      mostFrom: top?.[0],
      lastedMs: e.lastAt - e.since,
    });
  }
}
