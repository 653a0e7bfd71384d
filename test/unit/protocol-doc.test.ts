import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ADMIN_CALLS, ADMIN_EVENTS } from '../../core/admin/contract.js';
import { FrameType, portRequestSchema } from '../../core/protocol/frames.js';
import { cpPortRequestSchema, operatorPortRequestSchema } from '../../core/protocol/port-requests.js';
import * as limits from '../../core/protocol/limits.js';
import { describeStatus, isRetryable, Status } from '../../core/protocol/status.js';

/** docs/PROTOCOL.md mirrors the code's tables; these checks keep the two from drifting apart. */
const doc = readFileSync(new URL('../../docs/PROTOCOL.md', import.meta.url), 'utf8');
const esc = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

describe('docs/PROTOCOL.md mirrors the code', () => {
  it('lists every status code with its number, name, text and retryability', () => {
    for (const [name, code] of Object.entries(Status)) {
      const row = new RegExp(`^\\| ${code} \\| \`${name}\` \\| ${esc(describeStatus(code))} \\| ${isRetryable(code) ? 'yes' : 'no'} \\|`, 'm');
      expect(doc, `${name} (${code})`).toMatch(row);
    }
  });

  it('lists every limit of core/protocol/limits.ts with its default', () => {
    const entries = Object.entries(limits);
    expect(entries.length).toBeGreaterThan(20);
    for (const [name, value] of entries) {
      expect(doc, name).toMatch(new RegExp(`^\\| \`${name}\` \\| ${String(value)} \\|`, 'm'));
    }
  });

  it('lists every frame type with its number', () => {
    for (const [name, type] of Object.entries(FrameType)) {
      const hex = `0x${type.toString(16).padStart(2, '0')}`;
      const inTable = new RegExp(`^\\| ${hex} \\| ${name} \\|`, 'm').test(doc);
      const inText = doc.includes(`\`${name}\` ${hex}`);
      expect(inTable || inText, `${name} ${hex}`).toBe(true);
    }
  });

  it('lists every admin call and event', () => {
    for (const method of Object.keys(ADMIN_CALLS)) expect(doc, method).toMatch(new RegExp(`^\\| \`${esc(method)}\` \\|`, 'm'));
    for (const event of ADMIN_EVENTS) expect(doc, event).toMatch(new RegExp(`^\\| \`${esc(event)}\` \\|`, 'm'));
  });

  it('lists the keys each port op takes, optional ones marked ?, as core/protocol/port-requests.ts has them', () => {
    const section = doc.slice(doc.indexOf('### 16.3 The operations'), doc.indexOf('### 16.4'));
    const keys = Object.keys(portRequestSchema.shape);
    // Each row: | `op` | `key`, `key`?, ... (remarks) | -> its keys, with ? for the optional ones.
    const rows = [...section.matchAll(/^\| `(\w+)` \| ([^|]+) \|/gm)].map(([, op, cell]) => ({
      op: op!,
      keys: [...cell!.matchAll(/`(\w+)`(\??)/g)].filter(([, k]) => keys.includes(k!)).map(([, k, q]) => `${k}${q}`).sort(),
    }));
    const listed = (variant: { shape: Record<string, object> }, leave: string[]): string[] =>
      Object.entries(variant.shape).filter(([k]) => !leave.includes(k)).map(([k, schema]) => `${k}${'optional' in schema ? '?' : ''}`).sort();
    const common = ['req', 'operator'];
    // Relay -> contact point: every op has its row; the operator's expose and unexpose (with cp) have theirs.
    for (const [op, variant] of Object.entries(cpPortRequestSchema.variants)) {
      expect(rows, op).toContainEqual({ op, keys: listed(variant, common) });
    }
    for (const op of ['expose', 'unexpose'] as const) {
      expect(rows, `${op} from an operator`).toContainEqual({ op, keys: listed(operatorPortRequestSchema.variants[op], common) });
    }
  });

  it('quotes the exact signed text of the peer proof', () => {
    expect(doc).toContain('"contact-point peer proof v1" LF <name> LF <nonce>');
  });
});
