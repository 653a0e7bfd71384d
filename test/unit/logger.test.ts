import { describe, expect, it } from 'vitest';
import { createLogger, MAX_LOGGED_BUFFER_BYTES, type LogFields } from '../../core/runtime/logger.js';

function jsonLogger(fields?: LogFields): { lines: string[]; log: ReturnType<typeof createLogger> } {
  const lines: string[] = [];
  return { lines, log: createLogger({ format: 'json', level: 'debug', write: (l) => void lines.push(l), ...(fields ? { fields } : {}) }) };
}

const parse = (line: string | undefined): Record<string, unknown> => JSON.parse(line ?? 'missing') as Record<string, unknown>;

describe('logger, JSON format', () => {
  it('writes one object a line: time, level, msg, then the fields, child fields included', () => {
    const { lines, log } = jsonLogger({ part: 'relay' });
    log.child({ component: 'admin' }).warn('bad token', { remote: '127.0.0.1' });
    expect(lines).toHaveLength(1);
    const o = parse(lines[0]);
    expect(Object.keys(o).slice(0, 3)).toEqual(['time', 'level', 'msg']);
    expect(o).toMatchObject({ level: 'warn', msg: 'bad token', part: 'relay', component: 'admin', remote: '127.0.0.1' });
    expect(new Date(o.time as string).toISOString()).toBe(o.time);
  });

  it('keeps a message with newlines on one line, and does not let a field overwrite time, level or msg', () => {
    const { lines, log } = jsonLogger();
    log.info('first\nsecond\r\nthird', { msg: 'shadow', level: 'x', detail: 'a\nb' });
    expect(lines[0]).not.toMatch(/[\r\n]/);
    expect(parse(lines[0])).toMatchObject({ msg: 'first\nsecond\r\nthird', level: 'info', 'field.msg': 'shadow', 'field.level': 'x', detail: 'a\nb' });
  });

  it('serializes Errors, Buffers, bigints and cycles instead of throwing or printing {}', () => {
    const { lines, log } = jsonLogger();
    const cause = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
    const err = new Error('tunnel failed', { cause });
    const loop: Record<string, unknown> = { name: 'loop' };
    loop.self = loop;
    const shared = { n: 1 };
    const selfCaused = new Error('self');
    (selfCaused as { cause?: unknown }).cause = selfCaused;
    const big = Buffer.alloc(MAX_LOGGED_BUFFER_BYTES + 10, 0xab);
    log.error('boom', { err, buf: Buffer.from([1, 2, 255]), big, n: 12345678901234567890n, loop, a: shared, b: shared, selfCaused });
    const o = parse(lines[0]);
    expect(o.err).toEqual({ name: 'Error', message: 'tunnel failed', cause: { name: 'Error', message: 'connect ECONNREFUSED', code: 'ECONNREFUSED' } });
    expect(o.buf).toBe('<Buffer 0102ff>');
    expect(o.big).toBe(`<Buffer ${'ab'.repeat(MAX_LOGGED_BUFFER_BYTES)}… ${MAX_LOGGED_BUFFER_BYTES + 10} bytes>`);
    expect(o.n).toBe('12345678901234567890');
    expect(o.loop).toEqual({ name: 'loop', self: '[Circular]' });
    // the same object twice, side by side, is not a cycle
    expect(o.a).toEqual({ n: 1 });
    expect(o.b).toEqual({ n: 1 });
    expect(o.selfCaused).toEqual({ name: 'Error', message: 'self', cause: '[Circular]' });
  });

  it('survives a field whose toJSON throws', () => {
    const { lines, log } = jsonLogger();
    log.info('odd', { v: { toJSON: () => { throw new Error('no'); } } });
    expect(parse(lines[0])).toMatchObject({ msg: 'odd', v: '[unserializable: no]' });
  });

  it('filters by level like the text format', () => {
    const lines: string[] = [];
    const log = createLogger({ format: 'json', level: 'warn', write: (l) => void lines.push(l) });
    log.info('hidden');
    log.error('shown');
    expect(lines.map((l) => parse(l).msg)).toEqual(['shown']);
  });
});

describe('logger, text format', () => {
  it('is still the default: time level msg k=v, Errors shown by message', () => {
    const lines: string[] = [];
    createLogger({ write: (l) => void lines.push(l) }).warn('tunnel down', { id: 'acme-hq', err: new Error('gone') });
    expect(lines[0]).toMatch(/^\d{4}-\d\d-\d\dT\S+Z warn {2}tunnel down id=acme-hq err=\{"name":"Error","message":"gone"\}$/);
  });
});
