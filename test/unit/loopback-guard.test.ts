import { describe, expect, it } from 'vitest';
import { LoopbackGuard } from '../../core/admin/loopback-guard.js';

/**
 * The Host and Origin rules of the admin endpoints (the HTTP side is exercised against real
 * servers in test/integration/admin.test.ts and relay-status.test.ts; binding a test server to a
 * non-loopback address would open it to the network, so that case is checked here).
 */
describe('LoopbackGuard: which Host and Origin an admin endpoint answers', () => {
  it('on loopback: only its loopback names with its port; an Origin must be one of them', () => {
    const g = new LoopbackGuard("'self'");
    g.bound(4000, '127.0.0.1', '127.0.0.1');
    for (const host of ['127.0.0.1:4000', 'localhost:4000', '[::1]:4000', 'LocalHost:4000']) expect(g.hostAllowed(host)).toBe(true);
    for (const host of [undefined, '', 'evil.example:4000', '127.0.0.1:4001', '192.0.2.2:4000']) expect(g.hostAllowed(host)).toBe(false);
    expect(g.originAllowed(undefined, '127.0.0.1:4000')).toBe(true);
    expect(g.originAllowed('http://localhost:4000', '127.0.0.1:4000')).toBe(true);
    expect(g.originAllowed('http://evil.example:4000', 'evil.example:4000')).toBe(false);
    expect(g.originAllowed('null', '127.0.0.1:4000')).toBe(false);
  });

  it('bound to every address (--admin-listen-any): any Host, and an Origin only when it is the request\'s own host', () => {
    const g = new LoopbackGuard("'self'");
    g.bound(4000, '0.0.0.0', '0.0.0.0');
    // A browser or CLI on another machine names it by the address it reached (refused before: 421 and 403).
    expect(g.hostAllowed('192.0.2.2:4000')).toBe(true);
    expect(g.hostAllowed('office-box.lan:4000')).toBe(true);
    expect(g.hostAllowed(undefined)).toBe(false);
    expect(g.originAllowed('http://192.0.2.2:4000', '192.0.2.2:4000')).toBe(true);
    expect(g.originAllowed('http://OFFICE-BOX.lan:4000', 'office-box.lan:4000')).toBe(true);
    // A page elsewhere driving the admin's browser: its Origin is its own site.
    expect(g.originAllowed('http://evil.example', '192.0.2.2:4000')).toBe(false);
    expect(g.originAllowed('http://192.0.2.2:4001', '192.0.2.2:4000')).toBe(false);
    expect(g.originAllowed('null', '192.0.2.2:4000')).toBe(false);
    expect(g.originAllowed('http://192.0.2.2:4000', undefined)).toBe(false);
  });
});
