import { lookup } from 'node:dns/promises';
import { createSocket, type Socket } from 'node:dgram';
import type { Datagram, OutgoingDatagram } from '../protocol/datagram.js';
import type { UdpChannelBody } from '../protocol/frames.js';
import {
  decodeUdpDatagram,
  encodeUdpDatagram,
  openUdp,
  ReplayWindow,
  sealUdp,
  UDP_CHANNEL_MAX_PAYLOAD,
  UDP_DEAD_AFTER_MS,
  UDP_KEEPALIVE_MS,
  UDP_MAX_SEQ,
  UDP_PROBE_MS,
  UdpKind,
  udpKeys,
  type UdpKey,
} from '../protocol/udp-channel.js';
import type { Logger } from '../runtime/logger.js';

/**
 * The contact point's end of the UDP channel to the relay's service port. It probes until the
 * relay answers (UDP passes the firewall), then keeps the NAT mapping alive; while alive,
 * datagrams use it, otherwise they go inside the ws tunnel. Every packet is sealed with the
 * session's AEAD keys (one per direction); nothing is trusted that does not open.
 */
export class UdpChannel {
  private socket: Socket | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly keys: { readonly send: UdpKey; readonly receive: UdpKey };
  private readonly session: Buffer;
  private readonly window = new ReplayWindow();
  private seq = 0;
  private lastValid = 0;
  private closed = false;
  /** rejected: packets that did not open (tampered, another session's, garbage); replayed: a sequence number seen before */
  readonly stats = { datagramsIn: 0, datagramsOut: 0, rejected: 0, replayed: 0 };

  constructor(
    private readonly relayHost: string,
    offer: UdpChannelBody,
    private readonly port: number,
    private readonly onDatagram: (d: Datagram) => void,
    private readonly logger: Logger,
  ) {
    this.session = Buffer.from(offer.session, 'base64');
    this.keys = udpKeys(Buffer.from(offer.key, 'base64'), this.session, 'contact-point');
  }

  /** UDP is known to pass: an authenticated answer came recently. */
  get ready(): boolean {
    return this.lastValid !== 0 && Date.now() - this.lastValid < UDP_DEAD_AFTER_MS;
  }

  async start(): Promise<void> {
    let address: string;
    let family: number;
    try {
      ({ address, family } = await lookup(this.relayHost.replace(/^\[|\]$/g, '')));
    } catch (err: unknown) {
      this.logger.info('udp channel: cannot resolve the relay; datagrams stay in the tunnel', { error: (err as Error).message });
      return;
    }
    if (this.closed) return;
    const socket = createSocket(family === 6 ? 'udp6' : 'udp4');
    this.socket = socket;
    socket.on('error', (err) => this.logger.debug('udp channel error', { error: err.message }));
    socket.on('message', (msg) => this.onPacket(msg));
    socket.connect(this.port, address, () => {
      this.probe();
    });
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    try {
      this.socket?.close();
    } catch {
      // already closed
    }
    this.socket = undefined;
  }

  /** Sends over UDP when the channel is alive and the datagram small enough; false: use the tunnel. */
  send(d: OutgoingDatagram): boolean {
    if (!this.ready || !this.socket || d.payload.length > UDP_CHANNEL_MAX_PAYLOAD || this.seq >= UDP_MAX_SEQ) return false;
    this.socket.send(sealUdp(this.keys.send, this.session, UdpKind.DATAGRAM, ++this.seq, encodeUdpDatagram(d)));
    this.stats.datagramsOut++;
    return true;
  }

  private probe(): void {
    // A counter at its end (2^48 packets) ends the channel: datagrams stay in the tunnel until the next one.
    if (this.closed || !this.socket || this.seq >= UDP_MAX_SEQ) return;
    // Probes until the first answer, then keepalives; a silent relay drops us back to probing.
    const kind = this.ready ? UdpKind.KEEPALIVE : UdpKind.PROBE;
    this.socket.send(sealUdp(this.keys.send, this.session, kind, ++this.seq));
    this.timer = setTimeout(() => this.probe(), this.ready ? UDP_KEEPALIVE_MS : UDP_PROBE_MS);
    this.timer.unref();
  }

  private onPacket(msg: Buffer): void {
    const p = openUdp(this.keys.receive, msg);
    if (!p || !p.session.equals(this.session)) {
      this.stats.rejected++;
      return;
    }
    if (!this.window.accept(p.seq)) {
      this.stats.replayed++;
      return;
    }
    const wasReady = this.ready;
    this.lastValid = Date.now();
    if (!wasReady && (p.kind === UdpKind.PROBE_ACK || p.kind === UdpKind.KEEPALIVE_ACK)) {
      this.logger.info('udp channel to the relay is up');
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.probe(), UDP_KEEPALIVE_MS);
      this.timer.unref();
    }
    if (p.kind === UdpKind.DATAGRAM) {
      const d = decodeUdpDatagram(p.body);
      if (!d) return;
      this.stats.datagramsIn++;
      this.onDatagram(d);
    }
  }
}
