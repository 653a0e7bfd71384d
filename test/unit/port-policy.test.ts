import { describe, expect, it } from 'vitest';
import { PortPolicy } from '../../core/contact-point/port-policy.js';

describe('PortPolicy.resolveTarget: which refusal is which', () => {
  const policy = new PortPolicy({ targets: ['192.168.1.0/24:80', '127.0.0.1/32:631'], listen: [] });

  it('allows what a rule names, special addresses only through an explicit rule', async () => {
    await expect(policy.resolveTarget('192.168.1.20', 80)).resolves.toMatchObject({ ok: true, address: '192.168.1.20' });
    await expect(policy.resolveTarget('0x7f.1', 631)).resolves.toMatchObject({ ok: true, address: '127.0.0.1' });
  });

  it('calls an ordinary address or port the rules do not cover not allowed (PERMISSION_DENIED), not unsafe', async () => {
    await expect(policy.resolveTarget('192.168.1.20', 81)).resolves.toMatchObject({ ok: false, unsafe: false, reason: 'no target rule allows 192.168.1.20:81' });
    await expect(policy.resolveTarget('10.0.0.1', 80)).resolves.toMatchObject({ ok: false, unsafe: false });
    // Loopback named by a rule, on another port: the admin chose to allow it, so it is a plain refusal.
    await expect(policy.resolveTarget('127.0.0.1', 80)).resolves.toMatchObject({ ok: false, unsafe: false, reason: 'no target rule allows 127.0.0.1:80' });
  });

  it('calls special addresses no rule names unsafe (UNSAFE_TARGET)', async () => {
    for (const host of ['127.0.0.2', '169.254.169.254', '::1', '0.0.0.0']) {
      await expect(policy.resolveTarget(host, 80), host).resolves.toMatchObject({ ok: false, unsafe: true });
    }
  });
});
