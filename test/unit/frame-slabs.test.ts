import { describe, expect, it } from 'vitest';
import { FrameSlabs } from '../../core/protocol/frame-slabs.js';

/** Carves a frame of `bytes` filled with `fill`, as Link.writeFrame does; returns it and its write callback. */
function carve(slabs: FrameSlabs, bytes: number, fill: number): { out: Buffer; done: () => void } {
  const slab = slabs.slabFor(bytes);
  const out = slabs.carved(slab, bytes).fill(fill);
  return { out, done: slab.release };
}

describe('FrameSlabs', () => {
  it('carves frames one after another from one slab, none overlapping another', () => {
    const slabs = new FrameSlabs(4096, 1024, 2);
    const frames = [100, 1024, 7, 900].map((n, i) => carve(slabs, n, i + 1));
    expect(new Set(frames.map((f) => f.out.buffer)).size).toBe(1);
    frames.forEach((f, i) => expect(f.out.every((b) => b === i + 1)).toBe(true));
    expect(slabs.made).toBe(1);
  });

  it('does not reuse a full slab while a frame carved from it is unwritten, and reuses it once every one is', () => {
    const slabs = new FrameSlabs(4096, 1024, 2);
    const first = [1, 2, 3, 4].map((i) => carve(slabs, 1024, i)); // fills slab 1 exactly
    const next = carve(slabs, 1024, 9); // slab 1 full: a new one
    expect(next.out.buffer).not.toBe(first[0]!.out.buffer);
    expect(slabs.made).toBe(2);
    first.slice(0, 3).forEach((f) => f.done());
    // three of four written: slab 1 still holds the fourth, untouched
    for (let i = 0; i < 3; i++) carve(slabs, 1024, 0xee).done(); // fills slab 2
    const third = carve(slabs, 1024, 0xdd);
    expect(third.out.buffer).not.toBe(first[0]!.out.buffer);
    expect(slabs.made).toBe(3);
    expect(first[3]!.out.every((b) => b === 4)).toBe(true);
    first[3]!.done(); // the last frame of slab 1 written: it is free
    expect(slabs.freeCount).toBe(1);
    next.done(); // slab 2 is full (retired) and now all written: free too
    expect(slabs.freeCount).toBe(2);
    for (let i = 0; i < 3; i++) carve(slabs, 1024, 0xcc).done(); // fills slab 3: the next comes from the free list
    const reused = carve(slabs, 1024, 0xbb);
    expect([first[0]!.out.buffer, next.out.buffer]).toContain(reused.out.buffer);
    expect(slabs.made).toBe(3);
  });

  it('keeps at most `kept` free slabs; the rest are left to the GC', () => {
    const slabs = new FrameSlabs(1024, 256, 1);
    const held = Array.from({ length: 16 }, (_, i) => carve(slabs, 256, i)); // four slabs full
    carve(slabs, 256, 0); // a fifth: the four are retired
    expect(slabs.made).toBe(5);
    for (const f of held) f.done();
    expect(slabs.freeCount).toBe(1);
  });

  it('a slab whose frames were all written before it filled up is carved again from its start: one slab serves all', () => {
    const slabs = new FrameSlabs(1024, 256, 2);
    for (let i = 0; i < 100; i++) carve(slabs, 200, i).done();
    expect(slabs.made).toBe(1);
  });

  it('refuses frames too large for its slabs', () => {
    expect(() => new FrameSlabs(4096, 2048, 2)).toThrow(RangeError);
  });
});
