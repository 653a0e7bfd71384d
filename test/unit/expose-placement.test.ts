import { describe, expect, it } from 'vitest';
import { placementAllowed } from '../../core/peer/operator.js';

describe('expose placement: which advertised URLs an operator may be placed at', () => {
  it('never from a wss:// relay to a plain ws:// node (the credential would cross in clear); any other way is allowed', () => {
    expect(placementAllowed('wss://relay.example.com/v1', 'ws://r2.example.com/v1')).toBe(false);
    expect(placementAllowed('wss://relay.example.com/v1', 'wss://r2.example.com/v1')).toBe(true);
    expect(placementAllowed('ws://127.0.0.1:4000/v1', 'ws://127.0.0.1:4001/v1')).toBe(true);
    expect(placementAllowed('ws://127.0.0.1:4000/v1', 'wss://r2.example.com/v1')).toBe(true);
    // Schemes in any case: WSS:// to ws:// is the same downgrade (an SDK caller's URL is not lowered for it).
    expect(placementAllowed('WSS://relay.example.com/v1', 'ws://r2.example.com/v1')).toBe(false);
    expect(placementAllowed('wss://relay.example.com/v1', 'WS://r2.example.com/v1')).toBe(false);
    expect(placementAllowed('wss://relay.example.com/v1', 'WSS://r2.example.com/v1')).toBe(true);
  });
});
