import { randomBytes } from 'node:crypto';
import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import { decodeControl, decodeFrame, encodeControl, type Frame } from '../protocol/codec.js';
import { decodeDatagram, encodeDatagram, type Datagram } from '../protocol/datagram.js';
import { FrameType, type PortEventBody, type PortRequestBody, type PortResultBody } from '../protocol/frames.js';
import { cpPortRequestSchema } from '../protocol/port-requests.js';
import { splice } from '../protocol/bridge.js';
import { SchemaError } from '../protocol/schema.js';
import { describeStatus, Status } from '../protocol/status.js';
import { StreamMux, type MuxLink, type MuxStream } from '../protocol/stream-mux.js';
import type { Logger } from '../runtime/logger.js';
import { ControlChannel, type PortOwner } from './control.js';

/**
 * Port mediation across relay nodes (issue 12 item 5; docs/PROTOCOL.md "Relay cluster",
 * "Port mediation across nodes"). An operator (or exposure) on node A uses an office whose tunnel
 * is on node B through a *mediation link*: on A an ordinary ControlChannel whose link is NATS
 * (so operators.ts and expose.ts work unchanged), on B a LinkEnd that passes A's requests to the
 * tunnel's own ControlChannel and splices A's streams to the tunnel's, exactly as an operator
 * session on B would. Frames cross NATS as the bytes of our own frames, one NATS message each:
 *
 * - A -> B: `relay.m.<B>.c.<A>.<link>.<hex cp id>` (the cp id only names the tunnel when B first
 *   hears of the link, from its first frame, always a PORT_REQUEST; ids are hex so `.`, `*` and
 *   `>` in them never reach a subject)
 * - B -> A: `relay.m.<A>.o.<B>.<link>.<B's instance>`
 * - liveness: `relay.m.<node>.ping`, a NATS request each node answers with its instance.
 *
 * A node's instance is random per process, and a link id starts with its maker's instance: a node
 * restarted under the same id is told apart, and the links of its previous run end.
 *
 * Memory across the extra hop is bounded by the streams' own credit: each hop (operator - A,
 * A - B over NATS, B - tunnel) is a mux whose streams send only the window their receiver
 * granted, and a receiver grants credit back only as its splice hands the bytes on. So each
 * stream holds at most its window (INITIAL_STREAM_WINDOW, grown up to MAX_STREAM_WINDOW within
 * STREAM_WINDOW_BUDGET per link) at each hop, whatever NATS or either socket does.
 *
 * A link ends (its streams reset, its ports reported closed on A and closed at the contact point
 * by B) when the tunnel on B closes (B sends GOAWAY), when either node stops (GOAWAY), when the
 * other node stops answering pings (NATS says "no responders" the moment a killed node's
 * connection drops; else after MEDIATION_PROBE_TIMEOUT_MS), or when this node loses NATS.
 */

/** Each node pings every node it has mediation links with this often. */
export const MEDIATION_PROBE_MS = 1_000;
/** A node that does not answer a ping within this is gone: its links end. */
export const MEDIATION_PROBE_TIMEOUT_MS = 5_000;
/**
 * Pings out to one node at once. A ping that reached a node just before it was killed waits out
 * its timeout; the next second's ping, sent anyway, gets NATS's "no responders" at once.
 */
const MEDIATION_PROBES_IN_FLIGHT = Math.ceil(MEDIATION_PROBE_TIMEOUT_MS / MEDIATION_PROBE_MS);
/** Mediation links one node serves for other nodes' operators at once (beyond: GOAWAY, the request fails CONTACT_POINT_OFFLINE). */
export const MAX_MEDIATION_LINKS = 4_096;
/**
 * STREAM_DATA crosses NATS in frames of at most this many bytes (a DATA frame of the mux, up to
 * MAX_STREAM_CHUNK, is cut into several: credit counts bytes, so the receiver sees no
 * difference). nats-server and the client's parser copy a message that spans socket reads
 * piece by piece; with 128 KiB messages that cost nats-server about 4 ms of CPU per MB moved
 * and the nodes more, with 16 KiB ones about 2.5 (bench cluster-bulk, 8-32 KiB alike).
 */
export const NATS_DATA_PIECE_BYTES = 16 * 1024;
/** A node's instance: random bytes, in hex at the start of every link id it makes. */
const INSTANCE_BYTES = 6;
const INSTANCE_CHARS = INSTANCE_BYTES * 2;

/** What the mediation links need from the relay's control server. */
export interface MediationHost {
  /** the control channel of a tunnel held on this node */
  localChannel(cp: string): ControlChannel | undefined;
  /** a channel to a tunnel on another node was made: wire its events as a local tunnel's are */
  opened(cp: string, ch: ControlChannel): void;
  /** that channel ended: the ports its users opened are gone */
  ended(cp: string, ch: ControlChannel, reason: string): void;
  /** who owns a port at a contact point here, so its events and datagrams reach that owner */
  claim(cp: string, portId: number, owner: PortOwner | undefined): void;
  /** whether the tunnel of `cp` here offers port mediation (false: NOT_OFFERED, as on one node) */
  offersMediation(cp: string): boolean | undefined;
}

/**
 * What NatsLink writes a DATA frame's NATS messages through, all of them as one buffer: the
 * client's protocol handler (`sendCommand` queues bytes as they are, `flushPending` writes what
 * is queued). publish() would build each message from three pieces and join everything queued
 * into a new buffer before writing: with the 16 KiB pieces, that join, the pieces and the
 * protocol lines cost the publishing node about a fifth of its CPU per MB (bench cluster-bulk).
 * A client without these (another version) gets publish() per piece. NatsCluster writes its
 * BATCHes of forwarded frames through it too.
 */
export interface ProtocolWriter {
  sendCommand(cmd: Uint8Array): void;
  flushPending(): void;
}

export function protocolWriter(nc: NatsConnection): ProtocolWriter | undefined {
  const p = (nc as unknown as { protocol?: Partial<ProtocolWriter> }).protocol;
  return typeof p?.sendCommand === 'function' && typeof p.flushPending === 'function' ? (p as ProtocolWriter) : undefined;
}

/**
 * The NATS protocol bytes of frame `head` + `body[offset, offset + length)` cut into messages of
 * at most `piece` body bytes, each `PUB <subject> <size>` and that piece with its own copy of
 * `head` (what publish() would send for each piece).
 */
export function natsDataMessages(subject: string, head: Buffer, body: Buffer, offset: number, length: number, piece: number): Buffer {
  const prefix = `PUB ${subject} `;
  let size = 0;
  for (let at = 0; at < length; at += piece) {
    const n = head.length + Math.min(piece, length - at);
    size += prefix.length + String(n).length + 2 + n + 2;
  }
  const out = Buffer.allocUnsafe(size);
  let o = 0;
  for (let at = 0; at < length; at += piece) {
    const n = Math.min(piece, length - at);
    o += out.write(`${prefix}${head.length + n}\r\n`, o, 'latin1');
    o += head.copy(out, o);
    o += body.copy(out, o, offset + at, offset + at + n);
    out[o++] = 13;
    out[o++] = 10;
  }
  return out;
}

/** A link's NATS side: each frame one message on `subject`, its bytes as they are. */
class NatsLink implements MuxLink {
  /** sendParts joins head and body into one message (a copy) before it returns */
  readonly copiesBodies = true;
  /**
   * NATS buffers what it cannot write yet without a bound of its own; what bounds it here is
   * stream credit (see the top of this file), so the link reports no backlog.
   */
  readonly bufferedAmount = 0;

  private readonly writer: ProtocolWriter | undefined;

  constructor(
    private readonly nc: NatsConnection,
    readonly subject: string,
    private readonly logger: Logger,
  ) {
    this.writer = protocolWriter(nc);
  }

  send(frame: Buffer): boolean {
    try {
      this.nc.publish(this.subject, frame);
      return true;
    } catch (err: unknown) {
      // Closed or draining: the link ends with the connection (lost() / stop()).
      this.logger.debug('mediation frame not sent', { subject: this.subject, error: (err as Error).message });
      return false;
    }
  }

  sendParts(head: Buffer, body: Buffer, offset: number, length: number): boolean {
    // The server's max_payload (1 MiB unless configured lower) bounds a piece too.
    const piece = Math.max(1, Math.min(NATS_DATA_PIECE_BYTES, (this.nc.info?.max_payload ?? Infinity) - head.length));
    const w = this.writer;
    if (w && length > 0) {
      if (this.nc.isClosed() || this.nc.isDraining()) return false;
      const bytes = natsDataMessages(this.subject, head, body, offset, length, piece);
      // What publish() queued before goes first; then these bytes alone, so nothing joins them.
      w.flushPending();
      w.sendCommand(bytes);
      w.flushPending();
      return true;
    }
    for (let at = 0; at < length; at += piece) {
      const n = Math.min(piece, length - at);
      const buf = Buffer.allocUnsafe(head.length + n);
      head.copy(buf, 0);
      body.copy(buf, head.length, offset + at, offset + at + n);
      if (!this.send(buf)) return false;
    }
    return true;
  }

  whenWritable(fn: () => void): void {
    setImmediate(fn);
  }
}

/** The operator's side (node A) of a link: a ControlChannel to the tunnel on `node`. */
interface ChannelEnd {
  readonly cp: string;
  readonly node: string;
  readonly id: string;
  readonly ch: ControlChannel;
  /** the instance of `node` that answers on this link (from its first frame) */
  peerInstance: string | undefined;
}

/**
 * The tunnel's side (node B) of a link for another node's users: their requests go to the
 * tunnel's ControlChannel with its own ids, their streams are spliced to the tunnel's, and the
 * ports they opened are owned here, so events and datagrams for them go back over the link.
 */
class LinkEnd implements PortOwner {
  readonly mux: StreamMux;
  /** port id -> operator that opened it (closed at the contact point when the link ends) */
  private readonly ports = new Map<number, string>();
  private nextStream = -1;
  private ended = false;

  constructor(
    readonly peer: string,
    readonly id: string,
    readonly cp: string,
    private readonly control: ControlChannel,
    private readonly link: NatsLink,
    private readonly host: MediationHost,
    private readonly onEnd: (end: LinkEnd) => void,
  ) {
    this.mux = new StreamMux(link);
    control.once('ended', this.tunnelEnded);
  }

  private readonly tunnelEnded = (reason: string): void => this.end(`contact point ${this.cp}: ${reason}`, true);

  onFrame(frame: Frame): void {
    switch (frame.type) {
      case FrameType.PORT_REQUEST:
        // Decoded here, so a malformed body ends the link (the caller catches); answered when the tunnel answers.
        void this.request(decodeControl(frame, FrameType.PORT_REQUEST)).then((r) => this.link.send(encodeControl(FrameType.PORT_RESULT, r)));
        return;
      case FrameType.DATAGRAM:
        this.control.sendDatagram(decodeDatagram(frame));
        return;
      case FrameType.GOAWAY:
        this.end(decodeControl(frame, FrameType.GOAWAY).reason, false);
        return;
      default:
        this.mux.handle(frame);
    }
  }

  private async request(body: PortRequestBody): Promise<PortResultBody> {
    let r;
    try {
      r = cpPortRequestSchema.parse(body);
    } catch (err: unknown) {
      if (err instanceof SchemaError) return { req: body.req, ok: false, code: Status.BAD_REQUEST, reason: err.message };
      throw err;
    }
    const { req, ...onward } = r;
    if (this.host.offersMediation(this.cp) === false) return { req, ok: false, code: Status.NOT_OFFERED, reason: describeStatus(Status.NOT_OFFERED) };
    if (onward.op === 'connect') {
      const id = onward.streamId;
      if (id % 2 !== 0 || this.mux.get(id)) return { req, ok: false, code: Status.BAD_REQUEST, reason: 'connect needs a fresh even streamId' };
      const answer = await this.control.request({ ...onward, streamId: 0 }, undefined, this.mux.open(id));
      return { ...answer, req };
    }
    const answer = await this.control.request(onward);
    if (answer.ok && (onward.op === 'open' || onward.op === 'expose') && answer.portId !== undefined) {
      if (this.ended) {
        // The link ended while the contact point opened it: nobody will use it.
        if (!this.control.isClosed) void this.control.request({ op: 'close', operator: onward.operator, portId: answer.portId });
      } else {
        this.ports.set(answer.portId, onward.operator);
        this.host.claim(this.cp, answer.portId, this);
      }
    } else if (answer.ok && onward.op === 'close') {
      this.release(onward.portId);
    }
    return { ...answer, req };
  }

  accepted(e: PortEventBody, tunnelStream: MuxStream): void {
    do {
      this.nextStream = this.nextStream >= 0x7ffffffd ? 1 : this.nextStream + 2;
    } while (this.mux.get(this.nextStream));
    const id = this.nextStream;
    this.link.send(encodeControl(FrameType.PORT_EVENT, { ...e, streamId: id }));
    splice(this.mux.open(id), tunnelStream);
  }

  closed(_cp: string, e: PortEventBody): void {
    this.release(e.portId);
    this.link.send(encodeControl(FrameType.PORT_EVENT, e));
  }

  datagram(d: Datagram): void {
    this.link.send(encodeDatagram(d));
  }

  /** Ends the link: its streams reset, its ports closed at the contact point; `tell`: GOAWAY to the operator's node. */
  end(reason: string, tell: boolean): void {
    if (this.ended) return;
    this.ended = true;
    this.control.off('ended', this.tunnelEnded);
    for (const [portId, operator] of this.ports) {
      this.host.claim(this.cp, portId, undefined);
      if (!this.control.isClosed) void this.control.request({ op: 'close', operator, portId });
    }
    this.ports.clear();
    this.mux.resetAll(reason);
    if (tell) this.link.send(encodeControl(FrameType.GOAWAY, { reason: reason.slice(0, 256) }));
    this.onEnd(this);
  }

  private release(portId: number): void {
    if (this.ports.delete(portId)) this.host.claim(this.cp, portId, undefined);
  }
}

/** One relay node's mediation links, both sides (see the top of this file). */
export class ClusterMediation {
  private host: MediationHost | undefined;
  private sub: Subscription | undefined;
  private probeTimer: NodeJS.Timeout | undefined;
  /** operator's side: cp id -> its channel to the node holding the tunnel */
  private readonly channels = new Map<string, ChannelEnd>();
  private readonly channelsById = new Map<string, ChannelEnd>();
  /** tunnel's side: `<peer node> <link id>` -> link end */
  private readonly ends = new Map<string, LinkEnd>();
  /** node -> pings out to it */
  private readonly probing = new Map<string, number>();
  private stopped = false;
  /** this process among the runs of this node id (INSTANCE_CHARS hex digits) */
  private readonly instance = randomBytes(INSTANCE_BYTES).toString('hex');
  private nextLink = 0;

  constructor(
    private readonly nc: NatsConnection,
    readonly node: string,
    private readonly logger: Logger,
  ) {}

  attach(host: MediationHost): void {
    this.host = host;
  }

  start(): void {
    this.sub = this.nc.subscribe(`relay.m.${this.node}.>`, { callback: (err, m) => (err ? undefined : this.onMsg(m)) });
    this.probeTimer = setInterval(() => this.probe(), MEDIATION_PROBE_MS);
    this.probeTimer.unref();
  }

  /** Before the connection drains: every link ends, and the other nodes hear it (GOAWAY). */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.probeTimer);
    this.endAll('relay node stopping', true);
    try {
      this.sub?.unsubscribe();
    } catch {
      // the connection is closed already
    }
  }

  /** This node lost NATS: every link ends here (the other nodes notice by ping). */
  lost(reason: string): void {
    this.endAll(reason, false);
  }

  /** Links open now, for tests and status: operator's side, tunnel's side. */
  get size(): { channels: number; ends: number } {
    return { channels: this.channels.size, ends: this.ends.size };
  }

  /**
   * The channel to contact point `cp`, whose tunnel is on `node`: the link in use, or a new one
   * (one that leads to another node ends first: the tunnel moved).
   */
  channel(cp: string, node: string): ControlChannel | undefined {
    if (this.stopped || !this.host) return undefined;
    const current = this.channels.get(cp);
    if (current && current.node === node && !current.ch.isClosed) return current.ch;
    if (current) this.endChannel(current, `the tunnel of ${cp} moved to relay node ${node}`, true);
    const id = `${this.instance}${(this.nextLink++).toString(16)}`;
    const link = new NatsLink(this.nc, `relay.m.${node}.c.${this.node}.${id}.${Buffer.from(cp, 'utf8').toString('hex')}`, this.logger);
    const ch = new ControlChannel(cp, link);
    const end: ChannelEnd = { cp, node, id, ch, peerInstance: undefined };
    this.channels.set(cp, end);
    this.channelsById.set(id, end);
    this.host.opened(cp, ch);
    return ch;
  }

  private onMsg(m: Msg): void {
    // relay.m.<me>.ping | relay.m.<me>.o.<from>.<link>.<instance> | relay.m.<me>.c.<from>.<link>.<hex cp>
    const t = m.subject.split('.');
    if (t[3] === 'ping') return void m.respond(Buffer.from(this.instance));
    const from = t[4];
    const id = t[5];
    if (from === undefined || id === undefined) return;
    let frame: Frame;
    try {
      frame = decodeFrame(Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength));
    } catch (err: unknown) {
      this.logger.warn('mediation frame from another node dropped', { from, error: (err as Error).message });
      return;
    }
    if (t[3] === 'o') this.toChannel(from, id, t[6], frame);
    else if (t[3] === 'c') this.toEnd(from, id, t[6], frame);
  }

  /** A frame from the tunnel's node for a channel here. */
  private toChannel(from: string, id: string, instance: string | undefined, frame: Frame): void {
    const end = this.channelsById.get(id);
    if (end && end.node === from && instance !== undefined && end.peerInstance !== instance) {
      // The first frame names who answers; another one later is a restarted node that knows nothing of this link.
      if (end.peerInstance === undefined) end.peerInstance = instance;
      else return this.endChannel(end, `relay node ${from} restarted`, false);
    }
    if (!end || end.node !== from) {
      // A link we ended: tell the other side (once it hears GOAWAY it forgets the link).
      if (frame.type !== FrameType.GOAWAY) this.publish(`relay.m.${from}.c.${this.node}.${id}._`, encodeControl(FrameType.GOAWAY, { reason: 'no such mediation link' }));
      return;
    }
    if (frame.type === FrameType.GOAWAY) return this.endChannel(end, decodeControl(frame, FrameType.GOAWAY).reason, false);
    try {
      if (!end.ch.handleFrame(frame)) this.logger.debug('unexpected frame on a mediation link', { type: frame.type });
    } catch (err: unknown) {
      this.endChannel(end, `mediation link broken: ${(err as Error).message}`, true);
    }
  }

  /** A frame from an operator's node for the tunnel here. */
  private toEnd(from: string, id: string, cpToken: string | undefined, frame: Frame): void {
    const key = `${from} ${id}`;
    let end = this.ends.get(key);
    if (!end) {
      if (frame.type === FrameType.GOAWAY) return;
      const back = new NatsLink(this.nc, `relay.m.${from}.o.${this.node}.${id}.${this.instance}`, this.logger);
      // A link starts with a request; anything else is of a link this node no longer knows (it restarted, or ended it).
      if (frame.type !== FrameType.PORT_REQUEST) return void back.send(encodeControl(FrameType.GOAWAY, { reason: `relay node ${this.node} knows no such mediation link` }));
      const cp = cpToken !== undefined && /^(?:[0-9a-f]{2})+$/.test(cpToken) ? Buffer.from(cpToken, 'hex').toString('utf8') : undefined;
      const control = cp !== undefined ? this.host?.localChannel(cp) : undefined;
      if (!control || control.isClosed || this.ends.size >= MAX_MEDIATION_LINKS || this.stopped) {
        const reason = !control ? `contact point ${cp ?? '?'} has no tunnel on relay node ${this.node}` : `relay node ${this.node} serves ${MAX_MEDIATION_LINKS} mediation links already`;
        back.send(encodeControl(FrameType.GOAWAY, { reason }));
        return;
      }
      end = new LinkEnd(from, id, cp!, control, back, this.host!, (e) => this.ends.delete(`${e.peer} ${e.id}`));
      this.ends.set(key, end);
    }
    try {
      end.onFrame(frame);
    } catch (err: unknown) {
      end.end(`mediation link broken: ${(err as Error).message}`, true);
    }
  }

  private endChannel(end: ChannelEnd, reason: string, tell: boolean): void {
    if (this.channelsById.get(end.id) !== end) return;
    this.channelsById.delete(end.id);
    if (this.channels.get(end.cp) === end) this.channels.delete(end.cp);
    if (tell) this.publish(`relay.m.${end.node}.c.${this.node}.${end.id}._`, encodeControl(FrameType.GOAWAY, { reason: reason.slice(0, 256) }));
    end.ch.close(reason);
    this.host?.ended(end.cp, end.ch, reason);
  }

  private endAll(reason: string, tell: boolean): void {
    for (const end of [...this.channelsById.values()]) this.endChannel(end, reason, tell);
    for (const end of [...this.ends.values()]) end.end(reason, tell);
  }

  /** Every node this one has links with is pinged; one that is gone ends them. */
  private probe(): void {
    const peers = new Set<string>();
    for (const c of this.channelsById.values()) peers.add(c.node);
    for (const e of this.ends.values()) peers.add(e.peer);
    for (const peer of peers) {
      const out = this.probing.get(peer) ?? 0;
      if (out >= MEDIATION_PROBES_IN_FLIGHT) continue;
      this.probing.set(peer, out + 1);
      this.nc.request(`relay.m.${peer}.ping`, undefined, { timeout: MEDIATION_PROBE_TIMEOUT_MS }).then(
        (reply) => {
          this.probeDone(peer);
          this.restarted(peer, Buffer.from(reply.data).toString());
        },
        (err: unknown) => {
          this.probeDone(peer);
          if (this.stopped || this.nc.isClosed()) return;
          this.peerGone(peer, `relay node ${peer} is gone (${(err as Error).message})`);
        },
      );
    }
  }

  /** `peer` answers as `instance`: the links of any earlier run of it end. */
  private restarted(peer: string, instance: string): void {
    const reason = `relay node ${peer} restarted`;
    for (const c of [...this.channelsById.values()]) if (c.node === peer && c.peerInstance !== undefined && c.peerInstance !== instance) this.endChannel(c, reason, false);
    for (const e of [...this.ends.values()]) if (e.peer === peer && e.id.slice(0, INSTANCE_CHARS) !== instance) e.end(reason, false);
  }

  private probeDone(peer: string): void {
    const out = (this.probing.get(peer) ?? 1) - 1;
    if (out > 0) this.probing.set(peer, out);
    else this.probing.delete(peer);
  }

  private peerGone(peer: string, reason: string): void {
    // An earlier ping to it may fail after a later one ended its links: nothing left to end.
    if (![...this.channelsById.values()].some((c) => c.node === peer) && ![...this.ends.values()].some((e) => e.peer === peer)) return;
    this.logger.warn('mediation links to a relay node ended', { node: peer, reason });
    for (const c of [...this.channelsById.values()]) if (c.node === peer) this.endChannel(c, reason, false);
    for (const e of [...this.ends.values()]) if (e.peer === peer) e.end(reason, false);
  }

  private publish(subject: string, frame: Buffer): void {
    try {
      this.nc.publish(subject, frame);
    } catch {
      // closed: nobody to tell
    }
  }
}

