import { RefusalLog } from '../../core/relay/refusals.js';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { PortMediator } from '../../core/contact-point/mediation.js';
import { PortPolicy } from '../../core/contact-point/port-policy.js';
import { decodeControl, decodeFrame, encodeControl, type Frame } from '../../core/protocol/codec.js';
import { FrameType, portRequestSchema, type PortRequestBody, type PortResultBody } from '../../core/protocol/frames.js';
import type { Link } from '../../core/protocol/link.js';
import { cpPortRequestSchema, operatorPortRequestSchema } from '../../core/protocol/port-requests.js';
import { SchemaError } from '../../core/protocol/schema.js';
import type { MuxLink } from '../../core/protocol/stream-mux.js';
import { Status, statusName } from '../../core/protocol/status.js';
import type { ControlChannel } from '../../core/relay/control.js';
import type { Exposer } from '../../core/relay/expose.js';
import { OperatorSession } from '../../core/relay/operators.js';
import { silentLogger } from '../../core/runtime/logger.js';

/** A link that keeps what is sent on it, decoded. */
function recordingLink(): MuxLink & { results: PortResultBody[]; sent: PortRequestBody[] } {
  const results: PortResultBody[] = [];
  const sent: PortRequestBody[] = [];
  return {
    results,
    sent,
    send(frame: Buffer): boolean {
      const f = decodeFrame(frame);
      if (f.type === FrameType.PORT_RESULT) results.push(decodeControl(f, FrameType.PORT_RESULT));
      if (f.type === FrameType.PORT_REQUEST) sent.push(decodeControl(f, FrameType.PORT_REQUEST));
      return true;
    },
    sendParts: () => true,
    copiesBodies: true,
    bufferedAmount: 0,
    whenWritable: (fn) => fn(),
  };
}

async function answerTo(results: PortResultBody[], req: number): Promise<PortResultBody> {
  for (let i = 0; i < 200; i++) {
    const r = results.find((x) => x.req === req);
    if (r) return r;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  throw new Error(`no answer to request ${req}`);
}

const frame = (body: Record<string, unknown>): Frame =>
  decodeFrame(encodeControl(FrameType.PORT_REQUEST, body as PortRequestBody));

describe('port requests: what each op takes', () => {
  it('every key an op takes is a key of the PORT_REQUEST frame, so no op accepts what decoding refuses', () => {
    for (const schema of [cpPortRequestSchema, operatorPortRequestSchema]) {
      for (const [op, variant] of Object.entries(schema.variants as Record<string, { shape: object }>)) {
        for (const key of Object.keys(variant.shape)) expect(Object.keys(portRequestSchema.shape), `${op}.${key}`).toContain(key);
      }
    }
    expect(Object.keys(cpPortRequestSchema.variants)).toEqual(['open', 'redirect', 'connect', 'listen', 'close', 'expose']);
    expect(Object.keys(operatorPortRequestSchema.variants)).toEqual(['open', 'redirect', 'connect', 'listen', 'close', 'expose', 'unexpose', 'locate']);
  });

  it('relay -> contact point: required keys, and no key of another op', () => {
    const base = { req: 1, operator: 'tech' };
    const connect = { ...base, op: 'connect', portId: 3, host: '192.168.1.20', targetPort: 80, streamId: 2 };
    expect(cpPortRequestSchema.parse(connect)).toEqual(connect);
    const { host: _host, ...noHost } = connect;
    expect(() => cpPortRequestSchema.parse(noHost)).toThrow(new SchemaError('host', 'is required for op connect'));
    expect(() => cpPortRequestSchema.parse({ ...base, op: 'open' })).toThrow('proto is required for op open');
    expect(() => cpPortRequestSchema.parse({ ...base, op: 'open', proto: 'tcp', host: 'printer' })).toThrow('host is not a field of op open');
    expect(() => cpPortRequestSchema.parse({ ...base, op: 'close', portId: 3, cp: 'acme-hq' })).toThrow('cp is not a field of op close');
    expect(() => cpPortRequestSchema.parse({ ...base, op: 'unexpose', portId: 3 })).toThrow('op must be one of open, redirect, connect, listen, close, expose');
  });

  it('operator -> relay: cp for every op but unexpose; expose takes the relay-side port and maxStreams', () => {
    const base = { req: 1, operator: 'self' };
    expect(() => operatorPortRequestSchema.parse({ ...base, op: 'listen', portId: 3 })).toThrow('cp is required for op listen');
    expect(operatorPortRequestSchema.parse({ ...base, op: 'unexpose', portId: 4 })).toEqual({ op: 'unexpose', ...base, portId: 4 });
    const expose = { ...base, op: 'expose', cp: 'acme-hq', host: 'printer', targetPort: 80, port: 8080, maxStreams: 5 };
    expect(operatorPortRequestSchema.parse(expose)).toEqual(expose);
    const { cp: _cp, ...atTheContactPoint } = expose;
    expect(() => cpPortRequestSchema.parse(atTheContactPoint)).toThrow('port is not a field of op expose');
  });
});

function mediator(): { m: PortMediator; link: ReturnType<typeof recordingLink> } {
  const m = new PortMediator(new PortPolicy(), silentLogger);
  const link = recordingLink();
  m.attach(link);
  return { m, link };
}

/** An operator session at a relay whose one contact point, acme-hq, answers every request ok. */
function session(): { s: OperatorSession; link: ReturnType<typeof recordingLink>; tunnel: ReturnType<typeof recordingLink> } {
  const link = recordingLink();
  const tunnel = recordingLink();
  const channel = {
    request: (body: Omit<PortRequestBody, 'req'>) => {
      tunnel.sent.push({ ...body, req: 99 });
      return Promise.resolve({ req: 99, ok: true, portId: 5, port: 0, address: '0.0.0.0' });
    },
  } as unknown as ControlChannel;
  const s = new OperatorSession('tech', link as unknown as Link, {
    channel: (cp) => (cp === 'acme-hq' ? channel : undefined),
    knownContactPoint: (cp) => cp === 'acme-hq',
    offersMediation: (cp) => (cp === 'acme-hq' ? true : undefined),
    exposer: {} as Exposer,
    logger: silentLogger,
    refusals: new RefusalLog(silentLogger),
    claim: () => undefined,
  });
  return { s, link, tunnel };
}

describe('the contact point dispatches port requests from its table', () => {
  it('an op not in its table (the relay\'s unexpose) is BAD_REQUEST, saying whose op it is', async () => {
    const { m, link } = mediator();
    expect(m.handleFrame(frame({ req: 7, op: 'unexpose', operator: 'tech', portId: 1 }))).toBe(true);
    expect(await answerTo(link.results, 7)).toEqual({ req: 7, ok: false, code: Status.BAD_REQUEST, reason: 'unexpose is for the relay, not a contact point' });
    m.detach('test over');
  });

  it('a missing key or a key of another op is BAD_REQUEST naming it; a well-formed request reaches its handler', async () => {
    const { m, link } = mediator();
    m.handleFrame(frame({ req: 1, op: 'connect', operator: 'tech', portId: 1, targetPort: 80, streamId: 2 }));
    m.handleFrame(frame({ req: 2, op: 'open', operator: 'tech', proto: 'tcp', host: 'printer' }));
    m.handleFrame(frame({ req: 3, op: 'close', operator: 'tech' }));
    m.handleFrame(frame({ req: 4, op: 'close', operator: 'tech', portId: 9 }));
    expect(await answerTo(link.results, 1)).toMatchObject({ ok: false, code: Status.BAD_REQUEST, reason: 'host is required for op connect' });
    expect(await answerTo(link.results, 2)).toMatchObject({ ok: false, code: Status.BAD_REQUEST, reason: 'host is not a field of op open' });
    expect(await answerTo(link.results, 3)).toMatchObject({ ok: false, code: Status.BAD_REQUEST, reason: 'portId is required for op close' });
    expect(await answerTo(link.results, 4)).toMatchObject({ ok: false, code: Status.UNKNOWN_PORT, reason: 'no port with id 9' });
    m.detach('test over');
  });
});

describe('the relay dispatches an operator\'s port requests from its table', () => {
  it('refuses a malformed request before it goes anywhere; forwards a good one without cp and req', async () => {
    const { s, link, tunnel } = session();
    s.handleFrame(frame({ req: 1, op: 'open', operator: 'self', proto: 'tcp' }));
    s.handleFrame(frame({ req: 2, op: 'expose', operator: 'self', cp: 'acme-hq', host: 'printer' }));
    s.handleFrame(frame({ req: 3, op: 'unexpose', operator: 'self' }));
    s.handleFrame(frame({ req: 4, op: 'open', operator: 'self', cp: 'acme-hq', proto: 'tcp', streamId: 2 }));
    s.handleFrame(frame({ req: 5, op: 'open', operator: 'self', cp: 'acme-hq', proto: 'udp', port: 0 }));
    expect(await answerTo(link.results, 1)).toMatchObject({ ok: false, code: Status.BAD_REQUEST, reason: 'cp is required for op open' });
    expect(await answerTo(link.results, 2)).toMatchObject({ ok: false, code: Status.BAD_REQUEST, reason: 'targetPort is required for op expose' });
    expect(await answerTo(link.results, 3)).toMatchObject({ ok: false, code: Status.BAD_REQUEST, reason: 'portId is required for op unexpose' });
    expect(await answerTo(link.results, 4)).toMatchObject({ ok: false, code: Status.BAD_REQUEST, reason: 'streamId is not a field of op open' });
    expect(await answerTo(link.results, 5)).toEqual({ req: 5, ok: true, portId: 5, port: 0, address: '0.0.0.0' });
    // Only the good one reached the tunnel, with the session's name as operator.
    expect(tunnel.sent).toEqual([{ op: 'open', operator: 'tech', proto: 'udp', port: 0, req: 99 }]);
    s.close();
  });

  it('checks cp and ownership as before: unknown contact point, a port not opened by this operator', async () => {
    const { s, link } = session();
    s.handleFrame(frame({ req: 1, op: 'listen', operator: 'self', cp: 'elsewhere', portId: 3 }));
    s.handleFrame(frame({ req: 2, op: 'listen', operator: 'self', cp: 'acme-hq', portId: 3 }));
    s.handleFrame(frame({ req: 3, op: 'unexpose', operator: 'self', portId: 3 }));
    expect(await answerTo(link.results, 1)).toMatchObject({ ok: false, code: Status.UNKNOWN_CONTACT_POINT });
    expect(await answerTo(link.results, 2)).toMatchObject({ ok: false, code: Status.UNKNOWN_PORT, reason: 'port 3 was not opened by you' });
    expect(await answerTo(link.results, 3)).toMatchObject({ ok: false, code: Status.UNKNOWN_PORT, reason: 'no such exposure of yours' });
    s.close();
  });
});

interface OpCheckVector {
  name: string;
  hex: string;
  opCheck?: { at: 'contact point' | 'relay'; code?: number; codeName?: string; detail?: string };
}
const vectors = (JSON.parse(readFileSync(new URL('../vectors/frames.json', import.meta.url), 'utf8')) as { valid: OpCheckVector[] }).valid.filter((v) => v.opCheck);

describe('PORT_REQUEST vectors: the op check after decoding (test/vectors/frames.json opCheck)', () => {
  it('has vectors for both receivers and for refusals', () => {
    expect(new Set(vectors.map((v) => v.opCheck!.at))).toEqual(new Set(['contact point', 'relay']));
    expect(vectors.some((v) => v.opCheck!.code !== undefined)).toBe(true);
  });

  it.each(vectors.map((v) => [v.name, v] as const))('%s', async (_name, v) => {
    const f = decodeFrame(Buffer.from(v.hex, 'hex'));
    const { req } = decodeControl(f, FrameType.PORT_REQUEST);
    const check = v.opCheck!;
    const at = check.at === 'relay' ? session() : mediator();
    if ('s' in at) at.s.handleFrame(f);
    else at.m.handleFrame(f);
    const answer = await answerTo(at.link.results, req);
    if (check.code !== undefined) {
      expect(statusName(check.code)).toBe(check.codeName);
      expect(answer).toEqual({ req, ok: false, code: check.code, reason: check.detail });
    } else {
      // Past the op check: whatever the answer, it is not a malformed request.
      expect(answer.code).not.toBe(Status.BAD_REQUEST);
    }
    if ('s' in at) at.s.close();
    else at.m.detach('test over');
  });
});
