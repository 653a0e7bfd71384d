import { existsSync, readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { contentType } from '../../core/runtime/content-type.js';

// One table serves the GUI's files for the admin endpoint and for the desktop window.
const dist = new URL('../../renderer/dist/', import.meta.url);

describe('content types of the GUI files', () => {
  it('names the types the GUI build uses, and nothing else', () => {
    expect(contentType('/srv/gui/index.html')).toBe('text/html; charset=utf-8');
    expect(contentType('assets/index-abc.js')).toBe('text/javascript; charset=utf-8');
    expect(contentType('assets/index-abc.js.map')).toBe('application/json');
    expect(contentType('assets/index-abc.css')).toBe('text/css; charset=utf-8');
    expect(contentType('favicon.svg')).toBe('image/svg+xml');
    expect(contentType('notes.txt')).toBe('application/octet-stream');
    expect(contentType('Makefile')).toBe('application/octet-stream');
  });

  it.skipIf(!existsSync(dist))('has a type for every file of the built GUI (renderer/dist)', () => {
    const files = readdirSync(dist, { recursive: true, withFileTypes: true }).filter((f) => f.isFile());
    expect(files.length).toBeGreaterThan(0);
    for (const f of files) expect(contentType(f.name), f.name).not.toBe('application/octet-stream');
  });
});
