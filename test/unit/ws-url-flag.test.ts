import { describe, expect, it } from 'vitest';
import { wsUrl } from '../../core/cli/args.js';
import { UsageError } from '../../core/cli/errors.js';

describe('wsUrl: --relay, --advertise-url and other ws:// flags', () => {
  it('takes ws:// and wss:// URLs as typed, with the scheme in lower case', () => {
    expect(wsUrl('--relay', 'ws://127.0.0.1:8080/v1', 'ws://relay/v1')).toBe('ws://127.0.0.1:8080/v1');
    expect(wsUrl('--relay', 'wss://Relay.Example.com/v1', 'wss://relay/v1')).toBe('wss://Relay.Example.com/v1');
    // Upper-case schemes: URL accepts them, and a cluster node's advertised URL must not go out that way.
    expect(wsUrl('--advertise-url', 'WSS://r2.example.com/v1', 'wss://r2/v1')).toBe('wss://r2.example.com/v1');
    expect(wsUrl('--advertise-url', 'Ws://10.0.0.2:8080/v1', 'wss://r2/v1')).toBe('ws://10.0.0.2:8080/v1');
    // URL ignores surrounding spaces (a value pasted from a file); so does the flag.
    expect(wsUrl('--advertise-url', ' WSS://r2.example.com/v1\n', 'wss://r2/v1')).toBe('wss://r2.example.com/v1');
  });

  it('refuses other schemes and non-URLs with the flag and an example', () => {
    expect(() => wsUrl('--relay', 'https://relay.example.com', 'wss://relay/v1')).toThrow(UsageError);
    expect(() => wsUrl('--relay', 'https://relay.example.com', 'wss://relay/v1')).toThrow(/--relay "https:\/\/relay.example.com": expected a ws:\/\/ or wss:\/\/ URL such as wss:\/\/relay\/v1, not https:\/\//);
    expect(() => wsUrl('--relay', 'relay.example.com', 'wss://relay/v1')).toThrow(/not a URL/);
  });
});
