import type { RefusalKind, RefusalView } from '../admin/relay-contract.js';
import { Status, statusName } from '../protocol/status.js';
import type { Logger } from '../runtime/logger.js';
import { RefusalTally } from '../runtime/refusal-tally.js';
import { TokenBucket } from '../runtime/token-bucket.js';

/** Refusals the relay keeps for its status endpoint (a ring: the oldest is dropped). */
export const RECENT_REFUSALS = 200;
/** Refusal log lines a second, one per refusal, in bursts of REFUSAL_LOG_BURST; past that they are summed. */
export const REFUSAL_LOG_PER_SECOND = 5;
export const REFUSAL_LOG_BURST = 50;
/** Refusals over the log rate: one summary line per status code at most this often. */
export const REFUSAL_SUMMARY_MS = 1_000;
/** Refusals an operator should look at: logged at warn, the rest at info. */
const WARN_CODES = new Set<number>([Status.BAD_CREDENTIALS, Status.ID_IN_USE]);

/** A refusal as the part that made it reports it. */
export interface Refusal {
  readonly kind: RefusalKind;
  readonly code: number;
  /** `contact-point acme-hq`, `external alice`, `operator tech`; `-` before a hello */
  readonly who: string;
  readonly address?: string | undefined;
  readonly reason: string;
  /** several alike (an exposure's refused connections within a second); default 1 */
  readonly count?: number;
  /** extra log fields (`to` of a refused message, `publicPort` of an exposure) */
  readonly fields?: Record<string, unknown>;
}

/** Where the relay's parts report what they refuse (RefusalLog; a test may count instead). */
export interface RefusalSink {
  record(r: Refusal): void;
}

/** How a refusal names a session: its kind and id. */
export function who(s: { readonly kind: string; readonly id: string }): string {
  return `${s.kind} ${s.id}`;
}

/**
 * Every refusal the relay makes, in one place: logged once with its code's name and number,
 * who and from where (warn for bad credentials and a contested id, info otherwise), and kept
 * in a ring of the last RECENT_REFUSALS for the status endpoint. A flood cannot fill the disk:
 * lines go out one per refusal only while a token bucket allows (REFUSAL_LOG_PER_SECOND,
 * bursts of REFUSAL_LOG_BURST); beyond it refusals are counted per code and logged as one
 * summary line per code a second (RefusalTally), so the log grows by a few lines a second
 * however fast the refusals come.
 */
export class RefusalLog implements RefusalSink {
  private readonly ring: (RefusalView | undefined)[] = new Array<RefusalView | undefined>(RECENT_REFUSALS);
  private next = 0;
  private readonly bucket: TokenBucket;
  private readonly overflow: RefusalTally;
  /** every refusal (counts summed) */
  total = 0;

  constructor(
    private readonly logger: Logger,
    private readonly now: () => number = Date.now,
    bucket: TokenBucket = new TokenBucket(REFUSAL_LOG_PER_SECOND, REFUSAL_LOG_BURST),
  ) {
    this.bucket = bucket;
    this.overflow = new RefusalTally(REFUSAL_SUMMARY_MS, (counts) => {
      for (const c of counts) {
        this.logger.warn('relay refusals over the log rate, not logged one by one', { code: statusName(c.code), status: c.code, refused: c.count, lastReason: c.reason });
      }
    });
  }

  /** Refusals not logged line by line (summed in summary lines). */
  get notLogged(): number {
    return this.overflow.total;
  }

  record(r: Refusal): void {
    const count = r.count ?? 1;
    this.total += count;
    const view: RefusalView = { at: this.now(), kind: r.kind, code: r.code, name: statusName(r.code), who: r.who, address: r.address, reason: r.reason, count };
    this.ring[this.next] = view;
    this.next = (this.next + 1) % RECENT_REFUSALS;
    if (!this.bucket.take()) {
      this.overflow.add(r.code, `${r.who}: ${r.reason}`, count);
      return;
    }
    const level = WARN_CODES.has(r.code) || r.kind === 'exposure' ? 'warn' : 'info';
    this.logger[level]('relay refused', {
      kind: r.kind,
      code: view.name,
      status: r.code,
      who: r.who,
      remote: r.address,
      reason: r.reason,
      ...(count > 1 ? { count } : {}),
      ...r.fields,
    });
  }

  /** Newest first. */
  recent(): RefusalView[] {
    const out: RefusalView[] = [];
    for (let i = 1; i <= RECENT_REFUSALS; i++) {
      const v = this.ring[(this.next - i + RECENT_REFUSALS) % RECENT_REFUSALS];
      if (!v) break;
      out.push(v);
    }
    return out;
  }

  /** Logs what is counted and not yet summarized, and stops the summary timer. */
  stop(): void {
    this.overflow.flush();
    this.overflow.dispose();
  }
}
