import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import { decodeControl, decodeFrame, encodeControl } from '../protocol/codec.js';
import { FrameType, type LookupResultBody } from '../protocol/frames.js';
import type { Logger } from '../runtime/logger.js';
import { REMOTE_PROBE_MARGIN_MS } from './cluster.js';
import { LOOKUP_TIMEOUT_MS } from './name-service.js';

/** What a lookup answers (LOOKUP_RESULT without its request id). */
export type LookupAnswer = Omit<LookupResultBody, 'req'>;

/** What the name service of a node does for the others. */
export interface NamesHost {
  /** A lookup of `address` by `from` (an external peer on another node) for an office whose tunnel is here: answered as for a peer here. */
  answer(address: string, from: string): Promise<LookupAnswer>;
  /** A contact point's PRESENCE hint came in on another node: subscribers here look `address` up again. */
  hinted(address: string): void;
}

/**
 * Peer-level lookups across relay nodes (issue 12; docs/PROTOCOL.md 9.7). An external peer on
 * node A asks about `printer@acme-hq` whose tunnel is on node B: A sends the LOOKUP (our own frame,
 * its bytes as they are) as a NATS request to `relay.names.<B>.lookup`; B asks its tunnel, as for
 * a peer of its own (the contact point answers by its access rules), and replies with the
 * LOOKUP_RESULT frame. A contact point's PRESENCE hint, which comes up one tunnel only, is
 * published on `relay.names.hint.<node>` for every node, so subscribers anywhere look again.
 */
export class ClusterNames {
  private host: NamesHost | undefined;
  private subs: Subscription[] = [];
  private nextReq = 1;

  constructor(
    private readonly nc: NatsConnection,
    readonly node: string,
    private readonly logger: Logger,
  ) {}

  attach(host: NamesHost): void {
    this.host = host;
  }

  start(): void {
    this.subs = [
      this.nc.subscribe(`relay.names.${this.node}.lookup`, { callback: (err, m) => (err ? undefined : this.onLookup(m)) }),
      this.nc.subscribe('relay.names.hint.*', { callback: (err, m) => (err ? undefined : this.onHint(m)) }),
    ];
  }

  stop(): void {
    for (const s of this.subs) {
      try {
        s.unsubscribe();
      } catch {
        // the connection is closed already
      }
    }
    this.subs = [];
  }

  /** Asks `node`, which holds the tunnel of `address`'s office (it waits up to LOOKUP_TIMEOUT_MS for its contact point; this node REMOTE_PROBE_MARGIN_MS more); undefined when it does not answer in time (or is gone). */
  async ask(node: string, address: string, from: string): Promise<LookupAnswer | undefined> {
    const req = this.nextReq;
    this.nextReq = this.nextReq >= 0xffffffff ? 1 : this.nextReq + 1;
    try {
      const m = await this.nc.request(`relay.names.${node}.lookup`, encodeControl(FrameType.LOOKUP, { req, address, from }), { timeout: LOOKUP_TIMEOUT_MS + REMOTE_PROBE_MARGIN_MS });
      const { req: _req, ...answer } = decodeControl(decodeFrame(Buffer.from(m.data)), FrameType.LOOKUP_RESULT);
      return answer.address === address ? answer : undefined;
    } catch (err: unknown) {
      this.logger.debug('lookup not answered by the node holding the tunnel', { node, address, error: (err as Error).message });
      return undefined;
    }
  }

  /** A PRESENCE hint from a tunnel here: the other nodes' subscribers hear it too. */
  hint(address: string): void {
    try {
      this.nc.publish(`relay.names.hint.${this.node}`, Buffer.from(address, 'utf8'));
    } catch {
      // closed: the subscribers' nodes see the office go instead
    }
  }

  private onLookup(m: Msg): void {
    let body;
    try {
      body = decodeControl(decodeFrame(Buffer.from(m.data)), FrameType.LOOKUP);
    } catch (err: unknown) {
      this.logger.warn('lookup from another node dropped', { error: (err as Error).message });
      return;
    }
    const { req, address, from } = body;
    if (!this.host || from === undefined) return;
    void this.host.answer(address, from).then((a) => {
      try {
        m.respond(encodeControl(FrameType.LOOKUP_RESULT, { req, ...a }));
      } catch {
        // closed meanwhile: the asking node answers by itself after its timeout
      }
    });
  }

  private onHint(m: Msg): void {
    if (m.subject === `relay.names.hint.${this.node}`) return; // our own, already refreshed here
    this.host?.hinted(Buffer.from(m.data).toString('utf8'));
  }
}
