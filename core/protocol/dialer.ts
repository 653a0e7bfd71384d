import { EventEmitter } from 'node:events';
import { connect as netConnect, type Socket } from 'node:net';
import type { IncomingMessage } from 'node:http';
import { checkServerIdentity, connect as tlsConnect, type PeerCertificate } from 'node:tls';
import { HttpsProxyAgent } from 'https-proxy-agent';
import { WebSocket } from 'ws';
import { Backoff } from '../runtime/backoff.js';
import type { Logger } from '../runtime/logger.js';
import { decodeControl, type Frame } from './codec.js';
import { ProtocolError } from './errors.js';
import { CAPABILITY_ADAPTIVE_KEEPALIVE, CAPABILITY_BATCH, CAPABILITY_HEARTBEAT, FrameType, frameTypeName, type HelloBody, type WelcomeBody } from './frames.js';
import { MAX_FRAME_BYTES } from './limits.js';
import { Link, type CloseInfo } from './link.js';
import { describeDialError, describeUpgradeResponse, type DialErrorKind, type DialFailure } from './dial-failure.js';
import { describeStatus, Status, statusName } from './status.js';
import { proxyFor } from './proxy.js';
import type { Timing } from './timing.js';

export type DialerState = 'idle' | 'connecting' | 'connected' | 'reconnecting' | 'stopped';

export interface DialerStatus {
  readonly state: DialerState;
  /** when `state` began (ms since epoch) */
  readonly stateSince: number;
  readonly url: string;
  readonly session: string | undefined;
  readonly connectedAt: number | undefined;
  readonly lastError: string | undefined;
  readonly lastErrorCode: number | undefined;
  /** when lastError happened (ms since epoch) */
  readonly lastErrorAt: number | undefined;
  readonly lastErrorKind: DialErrorKind | undefined;
  /** the URL lastError is about (with several URLs the dialer has moved on to the next since) */
  readonly lastErrorUrl?: string | undefined;
  /** whether a connection has ever completed its hello (a URL that worked once is not wrong) */
  readonly everConnected: boolean;
  readonly nextRetryAt: number | undefined;
  /** the relay's reason while it refuses us because another live instance holds our id (ID_IN_USE) */
  readonly idInUse: string | undefined;
  /** successful connections after the first one */
  readonly reconnects: number;
  readonly proxy: string | undefined;
}

/** How long the check of a port that hung up (TLS or plain HTTP?) waits for its answer. */
export const PROTOCOL_PROBE_MS = 2_000;

export interface DialerOptions {
  readonly url: string;
  /**
   * More URLs of the same service (relay nodes, issue 12): after each failure or loss the next
   * one is dialled, in turn, starting from `url`.
   */
  readonly alternates?: readonly string[];
  readonly hello: () => HelloBody;
  /** Answers a CHALLENGE nonce with the proof text `proof` asks for (1 or 2; internal peers prove their key); without it a CHALLENGE is a fault. */
  readonly sign?: (nonce: string, proof: 1 | 2) => string;
  readonly logger: Logger;
  readonly label: string;
  /** HTTP CONNECT proxy URL; default from HTTPS_PROXY / HTTP_PROXY / NO_PROXY. `null`: never. */
  readonly proxy?: string | null;
  /** Extra CA certificates (PEM) to trust for wss, e.g. a relay's self-signed certificate. */
  readonly ca?: string | Buffer;
  /** keepalive, backoff, hello deadline and ID_IN_USE retry (core/protocol/timing.ts) */
  readonly timing: Timing;
  /** Every frame after WELCOME, called from the link's message handler; a ProtocolError thrown here faults the link. */
  readonly onFrame: (frame: Frame) => void;
  /** Stop instead of retrying when the far side refuses us for good (bad credentials, wrong version, identity). */
  readonly stopOnRejection?: boolean;
}

/** Refusals that retrying will not fix (REVOKED: the admin cut this peer off); with stopOnRejection they end the dialer. */
const REJECTIONS = new Set<number>([Status.BAD_CREDENTIALS, Status.VERSION_MISMATCH, Status.IDENTITY_MISMATCH, Status.REVOKED]);

export interface DialerEvents {
  status: [DialerStatus];
  up: [Link, WelcomeBody];
  down: [CloseInfo];
  rejected: [number, string];
}

/**
 * A client end that stays connected: dial, hello (and answer a challenge), hand frames to its
 * owner's onFrame (a direct call, no event per frame), and on any loss dial again after an
 * exponential, jittered delay. The contact point's gateway and the peer SDK are both built on it.
 */
export class Dialer extends EventEmitter<DialerEvents> {
  private state: DialerState = 'idle';
  private stateSince = Date.now();
  private link: Link | undefined;
  private ws: WebSocket | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private readonly backoff: Backoff;
  private session: string | undefined;
  private connectedAt: number | undefined;
  private lastError: string | undefined;
  private lastErrorCode: number | undefined;
  private lastErrorAt: number | undefined;
  private lastErrorKind: DialErrorKind | undefined;
  private lastErrorUrl: string | undefined;
  private nextRetryAt: number | undefined;
  /** the ID_IN_USE refusal last logged, so a conflict is logged once per change, not per retry */
  private idInUse: string | undefined;
  private connects = 0;
  /** a failure of the current attempt is being diagnosed (probeTls, probeHttp); later events of it are ignored */
  private failPending = false;
  private proxy: string | undefined;
  /** `url`, then the alternates: the one dialled now is urls[urlIndex] */
  private readonly urls: readonly string[];
  private urlIndex = 0;
  /** moveOn() asked for this connection's end: the next dial waits this long and says why */
  private moving: { readonly why: string; readonly delayMs: number } | undefined;

  constructor(private readonly opts: DialerOptions) {
    super();
    this.backoff = new Backoff(opts.timing.backoffBaseMs, opts.timing.backoffMaxMs);
    this.urls = [opts.url, ...(opts.alternates ?? [])];
    this.proxy = this.proxyOf(opts.url);
  }

  private proxyOf(url: string): string | undefined {
    return this.opts.proxy === null ? undefined : (this.opts.proxy ?? proxyFor(url, process.env));
  }

  /** The URL dialled now (or next). */
  get url(): string {
    return this.urls[this.urlIndex]!;
  }

  get current(): Link | undefined {
    return this.state === 'connected' ? this.link : undefined;
  }

  status(): DialerStatus {
    return {
      state: this.state,
      stateSince: this.stateSince,
      url: this.url,
      session: this.session,
      connectedAt: this.connectedAt,
      lastError: this.lastError,
      lastErrorCode: this.lastErrorCode,
      lastErrorAt: this.lastErrorAt,
      lastErrorKind: this.lastErrorKind,
      lastErrorUrl: this.lastErrorUrl,
      everConnected: this.connects > 0,
      nextRetryAt: this.nextRetryAt,
      idInUse: this.idInUse,
      reconnects: Math.max(0, this.connects - 1),
      proxy: this.proxy,
    };
  }

  start(): void {
    if (this.state !== 'idle' && this.state !== 'stopped') return;
    this.dial();
  }

  stop(): void {
    this.setState('stopped');
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.nextRetryAt = undefined;
    this.link?.close(1000, 'client stopping');
    if (this.ws && this.ws.readyState === WebSocket.CONNECTING) this.ws.terminate();
    this.emitStatus();
  }

  /**
   * Leave the far end this connection reached and dial the next URL after `delayMs` (a contact
   * point whose two tunnels landed on one relay node, issue 12); `why` is its status meanwhile.
   */
  moveOn(why: string, delayMs: number): void {
    if (this.state === 'stopped' || !this.link?.isOpen) return;
    this.moving = { why, delayMs };
    this.link.close(1000, why.slice(0, 120));
  }

  /** Drop the current connection (if any) and dial at once, skipping the backoff wait. */
  reconnectNow(): void {
    if (this.state === 'stopped') return;
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.backoff.reset();
    if (this.link?.isOpen) {
      this.link.close(1000, 'reconnect requested');
      return; // onClose schedules the next dial
    }
    this.ws?.terminate();
    this.dial();
  }

  /**
   * Through a proxy the TLS session is made by https-proxy-agent, which loses the host of an
   * IP-literal URL and would check the certificate against "localhost"; check it against the
   * host we actually dialled.
   */
  private readonly checkRelayIdentity = (_host: string, cert: PeerCertificate): Error | undefined =>
    checkServerIdentity(new URL(this.url).hostname.replace(/^\[|\]$/g, ''), cert);

  private setState(s: DialerState): void {
    if (s !== this.state) this.stateSince = Date.now();
    this.state = s;
  }

  private emitStatus(): void {
    this.emit('status', this.status());
  }

  private dial(): void {
    if (this.state === 'stopped') return;
    this.retryTimer = undefined;
    this.failPending = false;
    this.nextRetryAt = undefined;
    this.setState(this.connects === 0 && this.state !== 'reconnecting' ? 'connecting' : 'reconnecting');
    this.emitStatus();
    // rejectUnauthorized is set explicitly on every TLS connect (an https:// proxy, and through
    // ws the relay's session, direct or inside the proxy's tunnel): left out, Node takes it from
    // NODE_TLS_REJECT_UNAUTHORIZED, and "0" there would accept any certificate. Only `ca` widens trust.
    const agent = this.proxy ? new HttpsProxyAgent(this.proxy, { rejectUnauthorized: true, ...(this.opts.ca ? { ca: this.opts.ca } : {}) }) : undefined;
    let ws: WebSocket;
    try {
      ws = new WebSocket(this.url, {
        maxPayload: MAX_FRAME_BYTES,
        perMessageDeflate: false,
        handshakeTimeout: this.opts.timing.helloTimeoutMs,
        rejectUnauthorized: true,
        ...(agent ? { agent, checkServerIdentity: this.checkRelayIdentity } : {}),
        ...(this.opts.ca ? { ca: this.opts.ca } : {}),
      });
    } catch (err: unknown) {
      this.failed(`cannot dial ${this.url}: ${(err as Error).message}`, undefined, true, 'url');
      return;
    }
    this.ws = ws;
    let socket: Socket | undefined;
    /** the server answered the upgrade request (either way) */
    let answered = false;
    ws.once('upgrade', (res: IncomingMessage) => {
      answered = true;
      socket = res.socket;
    });
    ws.once('unexpected-response', (_req, res: IncomingMessage) => {
      answered = true;
      ws.terminate();
      this.failedDial(describeUpgradeResponse(this.url, res.statusCode ?? 0, res.headers.location));
    });
    const early = (err: Error & { code?: string }): void => {
      const url = new URL(this.url);
      // A dial hung up on before any answer may have reached a port that speaks the other
      // protocol (ws:// to TLS, wss:// to plain HTTP): ask that port before calling it a
      // network fault (only direct: through a proxy the port is the proxy's).
      if (!answered && !this.proxy && (err.code === 'ECONNRESET' || /hang up|disconnected before secure/i.test(err.message))) {
        this.failPending = true;
        const host = url.hostname.replace(/^\[|\]$/g, '');
        const probe = url.protocol === 'ws:' ? probeTls(host, Number(url.port || 80)) : probeHttp(host, Number(url.port || 443));
        void probe.then((other) => {
          if (this.ws !== ws) return; // stopped, or a new attempt began meanwhile
          this.failPending = false;
          this.failedDial(describeDialError(this.url, err, other));
        });
        return;
      }
      this.failedDial(describeDialError(this.url, err));
    };
    ws.once('error', early);
    ws.once('open', () => {
      ws.off('error', early);
      if (this.state === 'stopped') {
        ws.close();
        return;
      }
      this.handshake(new Link(ws, socket, {
        role: 'client',
        logger: this.opts.logger,
        label: this.opts.label,
        pingIntervalMs: this.opts.timing.pingIntervalMs,
        pongTimeoutMs: this.opts.timing.pongTimeoutMs,
      }));
    });
  }

  private handshake(link: Link): void {
    this.link = link;
    let welcomed = false;
    let refused: { code: number; reason: string } | undefined;
    const timer = setTimeout(() => link.fault(Status.HELLO_TIMEOUT, 'no WELCOME in time'), this.opts.timing.helloTimeoutMs);
    timer.unref();
    const onFrame = this.opts.onFrame;
    link.setHandler({
      onFrame: (frame) => {
        if (welcomed) {
          onFrame(frame);
          return;
        }
        switch (frame.type) {
          case FrameType.CHALLENGE: {
            if (!this.opts.sign) throw new ProtocolError(Status.PROTOCOL_VIOLATION, 'unexpected CHALLENGE');
            const { nonce, proof } = decodeControl(frame, FrameType.CHALLENGE);
            link.sendControl(FrameType.PROOF, { signature: this.opts.sign(nonce, proof === 2 ? 2 : 1) });
            return;
          }
          case FrameType.WELCOME: {
            const welcome = decodeControl(frame, FrameType.WELCOME);
            welcomed = true;
            if (welcome.capabilities?.includes(CAPABILITY_ADAPTIVE_KEEPALIVE)) link.adaptiveKeepalive(welcome.limits.pingIntervalMs, welcome.capabilities.includes(CAPABILITY_HEARTBEAT));
            if (welcome.capabilities?.includes(CAPABILITY_BATCH)) link.enableBatching();
            clearTimeout(timer);
            this.connects++;
            this.backoff.reset();
            this.session = welcome.session;
            this.connectedAt = Date.now();
            this.lastError = undefined;
            this.lastErrorCode = undefined;
            this.lastErrorKind = undefined;
            if (this.idInUse !== undefined) this.opts.logger.info('the id is free again: this instance now holds it at the relay', { link: this.opts.label });
            this.idInUse = undefined;
            this.setState('connected');
            this.emit('up', link, welcome);
            this.emitStatus();
            return;
          }
          case FrameType.ERROR: {
            const err = decodeControl(frame, FrameType.ERROR);
            refused = { code: err.code, reason: err.reason };
            return;
          }
          default:
            throw new ProtocolError(Status.PROTOCOL_VIOLATION, `${frameTypeName(frame.type)} before WELCOME`);
        }
      },
      onClose: (info) => {
        clearTimeout(timer);
        this.link = undefined;
        this.session = undefined;
        this.connectedAt = undefined;
        const code = refused?.code ?? info.status;
        const why = refused
          ? `${statusName(refused.code)}: ${refused.reason}`
          : info.status !== undefined
            ? `${statusName(info.status)}: ${info.reason || describeStatus(info.status)}`
            : `connection closed (${info.code}${info.reason ? ' ' + info.reason : ''})`;
        if (welcomed) this.emit('down', info);
        // A HELLO the far side finds invalid (a malformed secret, say) stays invalid: ours to fix.
        const final = code !== undefined && (REJECTIONS.has(code) || (!welcomed && code === Status.INVALID_BODY));
        if (final) {
          this.emit('rejected', code, why);
          if (this.opts.stopOnRejection) {
            this.lastError = why;
            this.lastErrorCode = code;
            this.lastErrorAt = Date.now();
            this.lastErrorKind = 'refused';
            this.stop();
            return;
          }
        }
        // SESSION_LIMIT: our credential holds as many relay sessions as it may; one may end, so
        // retry, but at the slowest pace rather than knock on a full door every second.
        this.failed(why, code, final || code === Status.SESSION_LIMIT, code !== undefined ? 'refused' : 'network');
      },
    });
    link.sendControl(FrameType.HELLO, this.opts.hello());
  }

  /** A dial that ended before the hello: what retrying can fix decides the pace (dial-failure.ts). */
  private failedDial(f: DialFailure): void {
    this.failed(f.message, undefined, f.kind !== 'network', f.kind);
  }

  private failed(why: string, code: number | undefined, slow: boolean, kind: DialErrorKind): void {
    this.link = undefined;
    this.ws = undefined;
    if (this.state === 'stopped') return;
    if (this.retryTimer || this.failPending) return; // already scheduled (or being diagnosed) for this attempt
    this.lastErrorUrl = this.url;
    // Several URLs: the next one is tried (a dead node's tunnel re-homes at the first retry).
    if (this.urls.length > 1) {
      this.urlIndex = (this.urlIndex + 1) % this.urls.length;
      this.proxy = this.proxyOf(this.url);
    }
    const moving = this.moving;
    this.moving = undefined;
    if (moving) why = moving.why;
    this.lastError = why;
    this.lastErrorCode = code;
    this.lastErrorAt = Date.now();
    this.lastErrorKind = kind;
    let delay: number;
    if (moving) {
      delay = moving.delayMs;
      this.idInUse = undefined;
    } else if (code === Status.ID_IN_USE) {
      // Another live instance holds our id: retry seldom (it may stop, and then this one takes
      // over), never at backoff pace, and say so once per change of holder, not on every retry.
      const base = this.opts.timing.idInUseRetryMs;
      delay = Math.round(base + Math.random() * base);
      const held = why.replace(`${statusName(Status.ID_IN_USE)}: `, '');
      if (held !== this.idInUse) this.opts.logger.warn('another instance holds this id at the relay; this one stays off and retries slowly', { link: this.opts.label, error: held, retryInMs: delay });
      else this.opts.logger.debug('id still held by another instance; retrying slowly', { link: this.opts.label, retryInMs: delay });
      this.idInUse = held;
    } else {
      // A refusal retrying cannot fix waits the longest delay, so a wrong credential does not hammer the relay.
      delay = slow ? this.opts.timing.backoffMaxMs : this.backoff.next();
      this.idInUse = undefined;
      // A cause waiting cannot fix (a wrong URL, an untrusted certificate, a refusal) is a warning: someone must act.
      const log = kind === 'network' ? this.opts.logger.info.bind(this.opts.logger) : this.opts.logger.warn.bind(this.opts.logger);
      log(this.connects === 0 ? 'cannot connect to the relay; retrying' : 'connection lost; retrying', { link: this.opts.label, error: why, retryInMs: delay });
    }
    this.nextRetryAt = Date.now() + delay;
    this.setState('reconnecting');
    this.retryTimer = setTimeout(() => this.dial(), delay);
    this.retryTimer.unref();
    this.emitStatus();
  }
}

/**
 * Whether host:port completes a TLS handshake (any certificate: nothing is sent over it). A
 * ws:// dial that is hung up on without an answer may have reached a TLS port; this tells that
 * apart from a relay that crashed mid-handshake.
 */
function probeTls(host: string, port: number, timeoutMs = PROTOCOL_PROBE_MS): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = tlsConnect({ host, port, servername: /^[\d.:]+$/.test(host) ? undefined : host, rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] });
    const done = (yes: boolean): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(yes);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    socket.once('secureConnect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/** Whether host:port answers a plain HTTP request (a wss:// dial to it was hung up on). */
function probeHttp(host: string, port: number, timeoutMs = PROTOCOL_PROBE_MS): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = netConnect({ host, port });
    let head = '';
    const done = (yes: boolean): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(yes);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    socket.once('connect', () => socket.write(`HEAD / HTTP/1.1\r\nHost: ${host.includes(':') ? `[${host}]` : host}:${port}\r\nConnection: close\r\n\r\n`));
    socket.on('data', (d: Buffer) => {
      head += d.toString('latin1');
      if (head.length >= 5) done(head.startsWith('HTTP/'));
    });
    socket.once('error', () => done(false));
    socket.once('close', () => done(false));
  });
}
