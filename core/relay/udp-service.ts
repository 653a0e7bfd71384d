import { randomBytes } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import type { Datagram, OutgoingDatagram } from '../protocol/datagram.js';
import type { Logger } from '../runtime/logger.js';
import {
  decodeUdpDatagram,
  encodeUdpDatagram,
  openUdp,
  ReplayWindow,
  sealUdp,
  UDP_CHANNEL_MAX_PAYLOAD,
  UDP_DEAD_AFTER_MS,
  UDP_MAX_SEQ,
  UDP_VERSION,
  UdpKind,
  udpKeys,
  udpSessionOf,
  type UdpKey,
} from '../protocol/udp-channel.js';

interface Session {
  readonly id: Buffer;
  /** seals what the relay sends (to the contact point) */
  readonly send: UdpKey;
  /** opens what the contact point sends */
  readonly receive: UdpKey;
  readonly window: ReplayWindow;
  readonly onDatagram: (d: Datagram) => void;
  seqOut: number;
  /** where this contact point's authenticated packets last came from (its NAT mapping) */
  peer: { address: string; port: number } | undefined;
  lastValid: number;
}

export interface UdpPath {
  readonly session: string;
  /** the session's key material, base64 (sent only inside the tunnel) */
  readonly key: string;
  /** the packet format, UDP_VERSION */
  readonly version: number;
  /** true when sent over UDP; false means use the tunnel */
  send(d: OutgoingDatagram): boolean;
  close(): void;
}

/**
 * The relay's one UDP service port (seed 002): each tunnel gets a session id and key over
 * the tunnel, then its contact point's authenticated packets tell the relay where its NAT
 * mapping is. Datagrams for that contact point go there while the path is alive.
 */
export class RelayUdpService {
  private socket: Socket | undefined;
  private readonly sessions = new Map<string, Session>();
  /** rejected: packets dropped unopened (unknown session, bad tag, tampered, garbage); replayed: opened but a sequence number seen before */
  readonly stats = { datagramsIn: 0, datagramsOut: 0, rejected: 0, replayed: 0 };
  port = 0;

  constructor(private readonly logger: Logger) {}

  async start(host: string, port: number): Promise<number> {
    const bind = (p: number): Promise<Socket> =>
      new Promise((resolve, reject) => {
        const s = createSocket(host.includes(':') ? 'udp6' : 'udp4');
        s.once('error', (err) => {
          s.close();
          reject(err);
        });
        s.bind(p, host, () => {
          s.removeAllListeners('error');
          resolve(s);
        });
      });
    // The same port number as the ws listener when it is free (one port to open in a firewall), else any.
    this.socket = await bind(port).catch(() => bind(0));
    this.socket.on('error', (err) => this.logger.warn('udp service error', { error: err.message }));
    this.socket.on('message', (msg, rinfo) => this.onPacket(msg, rinfo.address, rinfo.port));
    this.port = this.socket.address().port;
    return this.port;
  }

  stop(): void {
    this.socket?.close();
    this.socket = undefined;
    this.sessions.clear();
  }

  register(onDatagram: (d: Datagram) => void): UdpPath {
    const id = randomBytes(8);
    const key = randomBytes(32);
    const s: Session = { id, ...udpKeys(key, id, 'relay'), window: new ReplayWindow(), onDatagram, seqOut: 0, peer: undefined, lastValid: 0 };
    const name = id.toString('base64');
    this.sessions.set(name, s);
    return {
      session: name,
      key: key.toString('base64'),
      version: UDP_VERSION,
      send: (d) => {
        const sock = this.socket;
        if (!sock || !s.peer || Date.now() - s.lastValid > UDP_DEAD_AFTER_MS || d.payload.length > UDP_CHANNEL_MAX_PAYLOAD || s.seqOut >= UDP_MAX_SEQ) return false;
        sock.send(sealUdp(s.send, id, UdpKind.DATAGRAM, ++s.seqOut, encodeUdpDatagram(d)), s.peer.port, s.peer.address);
        this.stats.datagramsOut++;
        return true;
      },
      close: () => void this.sessions.delete(name),
    };
  }

  private onPacket(msg: Buffer, address: string, port: number): void {
    // From port 0 nothing can be answered (sendto refuses it): not a peer to remember.
    if (port === 0) {
      this.stats.rejected++;
      return;
    }
    const name = udpSessionOf(msg);
    const s = name ? this.sessions.get(name) : undefined;
    const p = s ? openUdp(s.receive, msg) : undefined;
    if (!s || !p) {
      this.stats.rejected++;
      return;
    }
    if (!s.window.accept(p.seq)) {
      this.stats.replayed++;
      return;
    }
    s.peer = { address, port };
    s.lastValid = Date.now();
    const reply = (kind: number): void => {
      if (s.seqOut < UDP_MAX_SEQ) this.socket?.send(sealUdp(s.send, s.id, kind, ++s.seqOut), port, address);
    };
    switch (p.kind) {
      case UdpKind.PROBE:
        return reply(UdpKind.PROBE_ACK);
      case UdpKind.KEEPALIVE:
        return reply(UdpKind.KEEPALIVE_ACK);
      case UdpKind.DATAGRAM: {
        const d = decodeUdpDatagram(p.body);
        if (!d) {
          this.stats.rejected++;
          return;
        }
        this.stats.datagramsIn++;
        s.onDatagram(d);
        return;
      }
    }
  }
}
