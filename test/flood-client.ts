import { WebSocket } from 'ws';
import { PeerIdentity } from '../core/peer/identity.js';
import { decodeControl, decodeFrame, encodeControl, type Frame } from '../core/protocol/codec.js';
import { FrameType } from '../core/protocol/frames.js';

/**
 * Internal peers as a registration flood makes them: each a real hello with a fresh Ed25519 key
 * from a chosen loopback source address, then REGISTER, its connection left open. The caller
 * terminates `sockets` when done (closeFloodSockets).
 */
const sockets: WebSocket[] = [];

export function closeFloodSockets(): void {
  for (const ws of sockets.splice(0)) ws.terminate();
}

export interface FloodOutcome {
  readonly name: string;
  /** the state the contact point reported after REGISTER, if it got that far */
  readonly state?: string;
  /** the refusal (ERROR code) if the hello was refused */
  readonly refused?: number;
  readonly reason?: string;
  readonly ws: WebSocket;
  readonly identity: PeerIdentity;
  /** every PEER_STATE and ERROR seen on the connection, in order */
  readonly seen: string[];
}

/**
 * One flooding peer, as the acceptance test did it: a fresh Ed25519 key, a real hello from
 * `localAddress` (a loopback address other than 127.0.0.1 stands in for another LAN host), then
 * REGISTER. Resolves once the contact point answered with PEER_STATE or refused the hello.
 * The connection stays open, as a flooder's would.
 */
export function rawPeer(url: string, name: string, localAddress: string, id = PeerIdentity.generate()): Promise<FloodOutcome> {
  const ws = new WebSocket(url, { perMessageDeflate: false, localAddress });
  sockets.push(ws);
  const seen: string[] = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name}: no answer in time`)), 10_000);
    const done = (o: Pick<FloodOutcome, 'state' | 'refused' | 'reason'>): void => {
      clearTimeout(timer);
      resolve({ ...o, name, ws, seen, identity: id });
    };
    ws.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    ws.on('open', () => ws.send(encodeControl(FrameType.HELLO, { versions: { min: 1, max: 1 }, role: 'peer', id: name, publicKey: id.publicKey })));
    ws.on('message', (data: Buffer) => {
      const f: Frame = decodeFrame(data);
      if (f.type === FrameType.CHALLENGE) {
        const { nonce } = decodeControl(f, FrameType.CHALLENGE);
        ws.send(encodeControl(FrameType.PROOF, { signature: id.signChallenge(name, nonce) }));
      } else if (f.type === FrameType.WELCOME) {
        ws.send(encodeControl(FrameType.REGISTER, {}));
      } else if (f.type === FrameType.PEER_STATE) {
        const { state } = decodeControl(f, FrameType.PEER_STATE);
        seen.push(state);
        done({ state });
      } else if (f.type === FrameType.ERROR) {
        const e = decodeControl(f, FrameType.ERROR);
        seen.push(`${e.code} ${e.reason}`);
        done({ refused: e.code, reason: e.reason });
      }
    });
  });
}

/** `count` flooding peers from one address, `concurrency` at a time (bounded in count and, by rawPeer, in time). */
export async function flood(url: string, from: string, prefix: string, count: number, concurrency = 8): Promise<FloodOutcome[]> {
  const out: FloodOutcome[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) {
        const i = next++;
        out.push(await rawPeer(url, `${prefix}-${i}`, from));
      }
    }),
  );
  return out;
}

