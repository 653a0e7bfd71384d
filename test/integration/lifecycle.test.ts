import { mkdtemp, readdir, readlink, rm } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ContactPoint } from '../../core/contact-point/contact-point.js';
import { HISTORY_DIR, HistoryStore } from '../../core/contact-point/history-store.js';
import { FAST, logger } from '../helpers.js';

/** Files this process holds open below `dir` (Linux: /proc/self/fd). */
async function openBelow(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const fd of await readdir('/proc/self/fd')) {
    const target = await readlink(join('/proc/self/fd', fd)).catch(() => '');
    if (target.startsWith(dir)) out.push(target);
  }
  return out;
}

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe.skipIf(process.platform !== 'linux')('contact point lifecycle', () => {
  it('stop() after a failed start() closes the history and the state file (a taken peer port)', async () => {
    const stateDir = await mkdtemp(join(tmpdir(), 'cp-lifecycle-'));
    cleanups.push(() => rm(stateDir, { recursive: true, force: true }));
    const holder = createServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise((resolve) => holder.close(resolve)));
    // A history from an earlier run, with room left: the next run appends to its newest segment.
    const earlier = await HistoryStore.open(join(stateDir, HISTORY_DIR), { entries: 100_000, days: 0 }, logger);
    earlier.append({ at: Date.now(), id: 'm1', dir: 'in', from: 'alice@relay', to: 'printer@acme-hq', size: 5, outcome: 'delivered', code: 0, reason: '' });
    await earlier.close();
    const cp = await ContactPoint.create({
      id: 'acme-hq',
      relayUrl: 'ws://127.0.0.1:9/v1',
      secret: 'x'.repeat(43),
      stateDir,
      peerHost: '127.0.0.1',
      peerPort: (holder.address() as AddressInfo).port,
      logger,
      timing: FAST,
    });
    expect(await openBelow(stateDir)).not.toEqual([]); // the history segment is open
    await expect(cp.start()).rejects.toThrow();
    await cp.stop();
    expect(await openBelow(stateDir)).toEqual([]);
  });
});
