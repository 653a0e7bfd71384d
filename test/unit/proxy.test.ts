import { describe, expect, it } from 'vitest';
import { proxyFor } from '../../core/protocol/proxy.js';

const HTTP = 'http://proxy.lan:3128';
const HTTPS = 'http://secure-proxy.lan:3128';

describe('proxyFor: which variable applies', () => {
  it('uses nothing when no proxy is configured', () => {
    expect(proxyFor('wss://relay.example.com/v1', {})).toBeUndefined();
    expect(proxyFor('ws://relay.example.com/v1', { HTTPS_PROXY: HTTPS })).toBeUndefined();
  });

  it('uses HTTPS_PROXY for wss and HTTP_PROXY for ws', () => {
    const env = { HTTPS_PROXY: HTTPS, HTTP_PROXY: HTTP };
    expect(proxyFor('wss://relay.example.com/v1', env)).toBe(HTTPS);
    expect(proxyFor('ws://relay.example.com/v1', env)).toBe(HTTP);
    expect(proxyFor('https://relay.example.com/v1', env)).toBe(HTTPS);
  });

  it('prefers the lower-case variable, and skips empty ones', () => {
    expect(proxyFor('wss://r.example.com/v1', { https_proxy: 'http://lower:1', HTTPS_PROXY: 'http://upper:1' })).toBe('http://lower:1');
    expect(proxyFor('wss://r.example.com/v1', { https_proxy: '', HTTPS_PROXY: 'http://upper:1' })).toBe('http://upper:1');
  });

  it('falls back to ALL_PROXY', () => {
    expect(proxyFor('wss://r.example.com/v1', { ALL_PROXY: 'http://all:1' })).toBe('http://all:1');
    expect(proxyFor('ws://r.example.com/v1', { all_proxy: 'http://all:2' })).toBe('http://all:2');
  });
});

describe('proxyFor: NO_PROXY', () => {
  const go = (url: string, noProxy: string): string | undefined => proxyFor(url, { HTTPS_PROXY: HTTPS, HTTP_PROXY: HTTP, NO_PROXY: noProxy });

  it('"*" bypasses the proxy for every host', () => {
    expect(go('wss://relay.example.com/v1', '*')).toBeUndefined();
  });

  it('matches a host exactly and its subdomains, case-insensitively', () => {
    expect(go('wss://relay.example.com/v1', 'example.com')).toBeUndefined();
    expect(go('wss://example.com/v1', 'example.com')).toBeUndefined();
    expect(go('wss://RELAY.Example.COM/v1', 'example.com')).toBeUndefined();
    expect(go('wss://relay.example.com/v1', 'EXAMPLE.com')).toBeUndefined();
    expect(go('wss://badexample.com/v1', 'example.com')).toBe(HTTPS);
    expect(go('wss://example.com.evil.net/v1', 'example.com')).toBe(HTTPS);
  });

  it('accepts ".domain" and "*.domain" forms', () => {
    expect(go('wss://relay.example.com/v1', '.example.com')).toBeUndefined();
    expect(go('wss://relay.example.com/v1', '*.example.com')).toBeUndefined();
  });

  it('reads lists separated by commas and spaces', () => {
    expect(go('ws://10.0.0.5:8080/v1', 'localhost, 127.0.0.1 ,10.0.0.5')).toBeUndefined();
    expect(go('ws://10.0.0.6:8080/v1', 'localhost, 127.0.0.1 ,10.0.0.5')).toBe(HTTP);
    expect(proxyFor('ws://10.0.0.5/v1', { HTTP_PROXY: HTTP, no_proxy: '10.0.0.5', NO_PROXY: 'other' })).toBeUndefined();
  });

  it('honours a port when the entry has one (default ports included)', () => {
    expect(go('ws://10.0.0.5:8080/v1', '10.0.0.5:8080')).toBeUndefined();
    expect(go('ws://10.0.0.5:8080/v1', '10.0.0.5:9090')).toBe(HTTP);
    expect(go('wss://relay.example.com/v1', 'relay.example.com:443')).toBeUndefined();
    expect(go('ws://relay.example.com/v1', 'relay.example.com:80')).toBeUndefined();
    expect(go('ws://relay.example.com/v1', 'relay.example.com:443')).toBe(HTTP);
  });

  it('matches IPv6 entries, bare or bracketed, with or without a port', () => {
    expect(go('ws://[::1]:8080/v1', '::1')).toBeUndefined();
    expect(go('ws://[::1]:8080/v1', '[::1]')).toBeUndefined();
    expect(go('ws://[::1]:8080/v1', '[::1]:8080')).toBeUndefined();
    expect(go('ws://[::1]:8080/v1', '[::1]:9090')).toBe(HTTP);
    expect(go('wss://[fd00::1]/v1', 'localhost,fd00::1')).toBeUndefined();
    expect(go('wss://[fd00::2]/v1', 'fd00::1')).toBe(HTTPS);
  });
});
