import { beforeEach, describe, expect, it } from 'vitest';
import { FLOOD_NOTICE_MS, FloodMonitor, MAX_FLOOD_SOURCES_LISTED, MAX_FLOOD_SOURCES_TRACKED, OTHER_SOURCES } from '../../core/contact-point/flood-monitor.js';
import { DEFAULT_REGISTRAR_LIMITS } from '../../core/contact-point/registrar.js';
import { createLogger } from '../../core/runtime/logger.js';

let t = 0;
let lines: string[];
let m: FloodMonitor;
beforeEach(() => {
  t = 1_000_000;
  lines = [];
  m = new FloodMonitor(DEFAULT_REGISTRAR_LIMITS, createLogger({ level: 'info', write: (l) => lines.push(l) }), () => t);
});

describe('flood monitor', () => {
  it('sums a flood per source address, and logs one warning for the whole episode', () => {
    expect(m.view()).toMatchObject({ dropped: 0, since: undefined, sources: [], otherSources: 0, limits: { perAddress: 16, total: 1000, newPerMinute: 60 } });
    expect(m.drop('192.168.1.50', 'evicted')).toBe(true);
    for (let i = 0; i < 999; i++) {
      t += 5;
      expect(m.drop('192.168.1.50', i % 10 === 0 ? 'refused' : 'evicted')).toBe(false);
    }
    m.drop('192.168.1.51', 'evicted');
    expect(m.view()).toMatchObject({
      dropped: 1_001,
      evicted: 901,
      refused: 100,
      since: 1_000_000,
      lastAt: t,
      sources: [
        { address: '192.168.1.50', evicted: 900, refused: 100 },
        { address: '192.168.1.51', evicted: 1, refused: 0 },
      ],
    });
    expect(lines.filter((l) => l.includes(' warn '))).toHaveLength(1);
    expect(lines[0]).toMatch(/warn +registration flood: .* from=192\.168\.1\.50/);
  });

  it('says what changed once, and ends the episode FLOOD_NOTICE_MS after the last drop', () => {
    m.drop('10.0.0.1', 'evicted');
    expect(m.takeChanged()).toBe(true);
    expect(m.takeChanged()).toBe(false);
    t += FLOOD_NOTICE_MS - 1;
    m.drop('10.0.0.1', 'evicted');
    expect(m.takeChanged()).toBe(true);
    t += FLOOD_NOTICE_MS - 1;
    expect(m.takeChanged()).toBe(false);
    expect(m.view().dropped).toBe(2);
    t += 1;
    expect(m.takeChanged()).toBe(true);
    expect(m.view()).toMatchObject({ dropped: 0, sources: [] });
    expect(lines.at(-1)).toMatch(/info +registration flood over .*dropped=2 .*mostFrom=10\.0\.0\.1/);
    // The next flood is a new episode, with its own warning.
    expect(m.drop('10.0.0.2', 'refused')).toBe(true);
    expect(lines.filter((l) => l.includes(' warn '))).toHaveLength(2);
  });

  it('stays bounded: lists at most MAX_FLOOD_SOURCES_LISTED and tracks at most MAX_FLOOD_SOURCES_TRACKED sources', () => {
    const n = MAX_FLOOD_SOURCES_TRACKED + 100;
    for (let i = 0; i < n; i++) m.drop(`fd00::${i.toString(16)}`, 'evicted');
    m.drop('fd00::7', 'evicted');
    const v = m.view();
    expect(v.dropped).toBe(n + 1);
    expect(v.sources).toHaveLength(MAX_FLOOD_SOURCES_LISTED);
    // The busiest real address first; the untracked lump (100 drops) is counted, last, and not listed here.
    expect(v.sources[0]).toMatchObject({ address: 'fd00::7', evicted: 2 });
    expect(v.sources.map((x) => x.address)).not.toContain(OTHER_SOURCES);
    expect(v.otherSources).toBe(MAX_FLOOD_SOURCES_TRACKED + 1 - MAX_FLOOD_SOURCES_LISTED);
  });
});
