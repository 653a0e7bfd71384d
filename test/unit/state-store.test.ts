import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, open, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { bookkeepingDelayMs, emptyState, SAVE_DELAY_MAX_MS, SAVE_DELAY_MS, SAVE_PACE, STATE_FILE, StateClosedError, StateSaveError, StateStore, type PersistedState } from '../../core/contact-point/state-store.js';
import { writeJsonAtomic } from '../../core/runtime/json-file.js';
import { createLogger, silentLogger } from '../../core/runtime/logger.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cp-unit-state-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const state = (n: number): PersistedState => ({
  version: 1,
  peers: [{ name: `p${n}`, publicKey: 'AAAA', state: 'registered', admittedBy: 'admin', firstSeen: 1, lastSeen: 2, messagesIn: n, messagesOut: 0 }],
  policy: { subnets: ['10.0.0.0/8'] },
});

async function rejection(p: Promise<unknown>): Promise<Error> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(err instanceof Error)) throw new Error('expected a rejection with an Error');
  return err;
}

describe('state file: load', () => {
  it('starts empty without a state dir or without a file', async () => {
    expect(await StateStore.load(undefined)).toEqual(emptyState());
    expect(await StateStore.load(dir)).toEqual(emptyState());
  });

  it('reads what was written', async () => {
    await writeJsonAtomic(join(dir, STATE_FILE), state(3));
    expect(await StateStore.load(dir)).toEqual(state(3));
  });

  it('refuses a file written by a newer version, rather than overwriting it', async () => {
    await writeFile(join(dir, STATE_FILE), JSON.stringify({ ...state(1), version: 2 }));
    const err = await rejection(StateStore.load(dir));
    expect(err.message).toContain(join(dir, STATE_FILE));
    expect(err.message).toContain('newer contact point (state version 2)');
  });

  it('names the file when its JSON is corrupt', async () => {
    await writeFile(join(dir, STATE_FILE), '{"version":1,"peers":[');
    const err = await rejection(StateStore.load(dir));
    expect(err.message).toContain(join(dir, STATE_FILE));
    expect(err.message).toMatch(/is not valid JSON/);
  });

  it('names the file and the field when the content fails the schema', async () => {
    await writeFile(join(dir, STATE_FILE), JSON.stringify({ version: 1, peers: [{ name: '' }], policy: { subnets: [] } }));
    const err = await rejection(StateStore.load(dir));
    expect(err.message).toBe(`${join(dir, STATE_FILE)}: peers[0].name must have at least 1 characters`);
  });
});

describe('state file: save', () => {
  it('writes the snapshot on flush, mode 0600, leaving no temp files', async () => {
    let current = state(1);
    let snapshots = 0;
    const store = StateStore.create(dir, () => (snapshots++, current), silentLogger);
    store.changed();
    store.changed();
    await store.flush();
    expect(snapshots).toBe(1);
    const path = join(dir, STATE_FILE);
    expect(JSON.parse(await readFile(path, 'utf8'))).toEqual(state(1));
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect(await readdir(dir)).toEqual([STATE_FILE]);

    current = state(2);
    await store.flush(); // nothing changed since: no write
    expect(snapshots).toBe(1);
    store.changed();
    await store.flush();
    expect(JSON.parse(await readFile(path, 'utf8'))).toEqual(state(2));
    expect(await readdir(dir)).toEqual([STATE_FILE]);
  });

  it('coalesces changes into one delayed write', async () => {
    let snapshots = 0;
    const store = StateStore.create(dir, () => (snapshots++, state(5)), silentLogger);
    for (let i = 0; i < 50; i++) store.changed();
    const deadline = Date.now() + 5_000;
    while (snapshots === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    await store.flush();
    expect(snapshots).toBe(1);
    expect(JSON.parse(await readFile(join(dir, STATE_FILE), 'utf8'))).toEqual(state(5));
  });

  it('coalesces bookkeeping for SAVE_DELAY_MS, or SAVE_PACE times the last write when that took long, up to SAVE_DELAY_MAX_MS', () => {
    expect(bookkeepingDelayMs(0)).toBe(SAVE_DELAY_MS);
    expect(bookkeepingDelayMs(SAVE_DELAY_MS / SAVE_PACE)).toBe(SAVE_DELAY_MS);
    expect(bookkeepingDelayMs(100)).toBe(100 * SAVE_PACE);
    expect(bookkeepingDelayMs(60_000)).toBe(SAVE_DELAY_MAX_MS);
  });

  it('writes pending changes at close and nothing after', async () => {
    let snapshots = 0;
    const store = StateStore.create(dir, () => (snapshots++, state(snapshots)), silentLogger);
    store.changed();
    await store.close();
    expect(snapshots).toBe(1);
    store.changed();
    await new Promise((r) => setTimeout(r, SAVE_DELAY_MS * 2));
    await store.flush();
    expect(snapshots).toBe(1);
    expect(JSON.parse(await readFile(join(dir, STATE_FILE), 'utf8'))).toEqual(state(1));
  });

  it('does nothing without a state dir', async () => {
    let snapshots = 0;
    const store = StateStore.create(undefined, () => (snapshots++, state(1)), silentLogger);
    store.changed();
    await store.flush();
    expect(snapshots).toBe(0);
  });

  it('an atomic write that cannot rename leaves the old content and no temp file', async () => {
    const target = join(dir, 'occupied');
    await mkdir(target);
    await writeFile(join(target, 'keep'), 'x');
    await expect(writeJsonAtomic(target, { a: 1 })).rejects.toThrow();
    expect((await readdir(dir)).sort()).toEqual(['occupied']);
    expect(await readFile(join(target, 'keep'), 'utf8')).toBe('x');
  });

  it('a failed save is logged and retried on the next flush', async () => {
    const lines: string[] = [];
    const logger = createLogger({ level: 'error', write: (l) => void lines.push(l) });
    const blocker = join(dir, STATE_FILE);
    await mkdir(blocker);
    await writeFile(join(blocker, 'x'), 'x');
    const store = StateStore.create(dir, () => state(9), logger);
    store.changed();
    await store.flush();
    expect(lines.join('\n')).toContain('could not save state');
    await rm(blocker, { recursive: true });
    await store.flush();
    expect(JSON.parse(await readFile(blocker, 'utf8'))).toEqual(state(9));
  });
});

describe('atomic, durable writes', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  /** Makes FileHandle.sync fail with `code` on its `nth` call (1-based): the file's fsync is the 1st, the folder's the 2nd. */
  async function failSync(nth: number, code: string): Promise<void> {
    const probe = await open(join(dir, 'probe'), 'w');
    const proto = Object.getPrototypeOf(probe) as { sync: (this: unknown) => Promise<void> };
    await probe.close();
    await rm(join(dir, 'probe'));
    const real = proto.sync;
    let calls = 0;
    vi.spyOn(proto, 'sync').mockImplementation(function (this: unknown) {
      if (++calls === nth) return Promise.reject(Object.assign(new Error(`${code}: simulated`), { code }));
      return real.call(this);
    });
  }

  it('writers of the same file at the same moment each get their own temp file and all succeed', async () => {
    const path = join(dir, 'same.json');
    const results = await Promise.allSettled(Array.from({ length: 8 }, (_, i) => writeJsonAtomic(path, { i })));
    expect(results.map((r) => r.status)).toEqual(Array(8).fill('fulfilled'));
    expect(await readdir(dir)).toEqual(['same.json']);
  });

  it('a failed fsync of the data fails the write and leaves no temp file and the old content', async () => {
    const path = join(dir, STATE_FILE);
    await writeJsonAtomic(path, { old: true });
    await failSync(1, 'EIO');
    await expect(writeJsonAtomic(path, { old: false })).rejects.toThrow(/EIO/);
    expect(await readdir(dir)).toEqual([STATE_FILE]);
    expect(JSON.parse(await readFile(path, 'utf8'))).toEqual({ old: true });
  });

  it('a failed fsync of the folder fails the write: the rename may not survive a crash', async () => {
    await failSync(2, 'EIO');
    await expect(writeJsonAtomic(join(dir, STATE_FILE), { a: 1 })).rejects.toThrow(/EIO/);
  });

  it('a file system without fsync on folders is not an error', async () => {
    await failSync(2, 'EINVAL');
    await writeJsonAtomic(join(dir, STATE_FILE), { a: 1 });
    expect(JSON.parse(await readFile(join(dir, STATE_FILE), 'utf8'))).toEqual({ a: 1 });
  });

  it('says plainly when the folder is a file', async () => {
    await writeFile(join(dir, 'cp'), 'x');
    await expect(writeJsonAtomic(join(dir, 'cp', STATE_FILE), { a: 1 })).rejects.toThrow(`${join(dir, 'cp')} is not a folder`);
  });
});

describe('state file: decisions (commit)', () => {
  /** A stand-in owner: its memory is `subnets`, which decisions change only in apply(). */
  function owner(): { store: StateStore; memory: { subnets: string[]; drafts: number }; decide: (subnet: string) => Promise<string[]> } {
    const memory = { subnets: [] as string[], drafts: 0 };
    const store = StateStore.create(dir, () => (memory.drafts++, { ...emptyState(), policy: { subnets: [...memory.subnets] } }), silentLogger);
    const decide = (subnet: string): Promise<string[]> =>
      store.commit((draft) => {
        const next = [...draft.policy.subnets, subnet];
        draft.policy = { subnets: next };
        return { apply: () => (memory.subnets = next) };
      });
    return { store, memory, decide };
  }

  it('writes the decision before applying it, and applies it before any later write', async () => {
    const { store, memory } = owner();
    const seen: unknown[] = [];
    const result = await store.commit((draft) => {
      draft.policy = { subnets: ['10.7.0.0/16'] };
      return {
        apply: () => {
          seen.push(JSON.parse(readFileSync(join(dir, STATE_FILE), 'utf8')));
          memory.subnets = ['10.7.0.0/16'];
          return 'done';
        },
      };
    });
    expect(result).toBe('done');
    expect(seen).toEqual([{ ...emptyState(), policy: { subnets: ['10.7.0.0/16'] } }]); // on disk when apply ran
    store.changed();
    await store.flush();
    expect(JSON.parse(await readFile(join(dir, STATE_FILE), 'utf8'))).toEqual({ ...emptyState(), policy: { subnets: ['10.7.0.0/16'] } });
  });

  it('a decision that cannot be written is not applied, is abandoned, and rejects with the file and the reason', async () => {
    const blocker = join(dir, STATE_FILE);
    await mkdir(blocker);
    const { store, memory, decide } = owner();
    let abandoned = false;
    const err = await rejection(
      store.commit((draft) => {
        draft.policy = { subnets: ['10.7.0.0/16'] };
        return { apply: () => (memory.subnets = ['10.7.0.0/16']), abandon: () => (abandoned = true) };
      }),
    );
    expect(err).toBeInstanceOf(StateSaveError);
    expect(err.message).toBe(`could not save ${blocker}: EISDIR: illegal operation on a directory`);
    expect({ subnets: memory.subnets, abandoned }).toEqual({ subnets: [], abandoned: true });
    // The queue goes on: once the path is free the next decision is written.
    await rm(blocker, { recursive: true });
    expect(await decide('10.8.0.0/16')).toEqual(['10.8.0.0/16']);
    expect(JSON.parse(await readFile(blocker, 'utf8'))).toEqual({ ...emptyState(), policy: { subnets: ['10.8.0.0/16'] } });
  });

  it('decisions that queue up during a write go to disk together, each checked against the ones before it', async () => {
    const { store, memory, decide } = owner();
    const first = decide('10.1.0.0/16');
    await new Promise((r) => setImmediate(r)); // its write is under way
    const rest = [decide('10.2.0.0/16'), decide('10.3.0.0/16'), decide('10.4.0.0/16')];
    const late = store
      .commit((draft) => {
        if (draft.policy.subnets.length !== 4) throw new Error(`saw ${draft.policy.subnets.length} subnets, not the 4 before it`);
        throw new Error('refused after checking');
      })
      .then(
        () => 'applied',
        (e: unknown) => (e as Error).message,
      );
    expect(await first).toEqual(['10.1.0.0/16']);
    expect(await Promise.all(rest)).toEqual([['10.1.0.0/16', '10.2.0.0/16'], ['10.1.0.0/16', '10.2.0.0/16', '10.3.0.0/16'], ['10.1.0.0/16', '10.2.0.0/16', '10.3.0.0/16', '10.4.0.0/16']]);
    expect(await late).toBe('refused after checking'); // only that one fails
    expect(memory.subnets).toHaveLength(4);
    expect(memory.drafts).toBe(2); // two writes: the first decision's, then the four that waited for it
    expect(JSON.parse(await readFile(join(dir, STATE_FILE), 'utf8'))).toEqual({ ...emptyState(), policy: { subnets: memory.subnets } });
  });

  it('a plan that throws writes nothing; after close a decision is refused', async () => {
    const { store, decide } = owner();
    await expect(
      store.commit(() => {
        throw new Error('no such peer');
      }),
    ).rejects.toThrow('no such peer');
    expect(await readdir(dir)).toEqual([]);
    await store.close();
    const err = await rejection(decide('10.1.0.0/16'));
    expect(err).toBeInstanceOf(StateClosedError);
    expect(await readdir(dir)).toEqual([]);
  });
});
