/**
 * Memory for the small ws frames a link writes itself (Link.writeFrame: a client's MSG sent alone,
 * a small BATCH): carved one after another out of a few shared slabs, each slab reused once the
 * sockets have written every frame carved from it.
 *
 * Why: a frame written through a socket must stay untouched until the socket has written it, so
 * its memory can only be reused from the write's callback. Before, each frame took a whole 72 KiB
 * buffer (sized for a sealed bundle) from a pool of 16, and a new one when the pool was empty: a
 * client link without batching that sends 256 messages in a turn (a sender's closed loop to a
 * server that does not speak `batch`) then allocated 72 KiB per 1 KiB message, ~150,000 times in
 * a 4.5 s round of bench `throughput`'s direct baseline: memory outside V8's heap that the GC
 * counts, and that started its collections. Carved from slabs, such a frame costs its own bytes,
 * and nothing new while the slabs come back.
 *
 * A frame that stays queued (a socket the kernel does not take from) holds its whole slab, as it
 * held its own 72 KiB buffer before; the slab is then not reused but left to the GC once the
 * frame is gone, so a slow socket never blocks the others.
 */

/** One slab: frames are carved from `used` on; `pending` of them are not written yet. */
export class Slab {
  readonly buffer: Buffer;
  used = 0;
  pending = 0;
  /** no more frames are carved from it (it is full); reused once `pending` is 0 */
  retired = false;
  /** The write callback of every frame carved from this slab (one function per slab, not per frame). */
  readonly release: () => void;

  constructor(
    bytes: number,
    private readonly owner: FrameSlabs,
  ) {
    this.buffer = Buffer.allocUnsafeSlow(bytes);
    this.release = () => {
      if (--this.pending === 0 && this.retired) this.owner.recycle(this);
    };
  }
}

export class FrameSlabs {
  private current: Slab;
  private readonly free: Slab[] = [];
  /** slabs made since the start (tests, benches: how often the free list ran dry) */
  made = 1;

  /**
   * @param slabBytes the size of a slab
   * @param maxFrameBytes the largest frame carved (at most slabBytes / 4, so a slab is not
   *   retired with most of it unused)
   * @param kept at most this many free slabs wait for reuse; more are left to the GC
   */
  constructor(
    readonly slabBytes: number,
    readonly maxFrameBytes: number,
    private readonly kept: number,
  ) {
    if (maxFrameBytes > slabBytes / 4) throw new RangeError(`frames of up to ${maxFrameBytes} B do not fit ${slabBytes} B slabs`);
    this.current = new Slab(slabBytes, this);
  }

  /**
   * The slab to carve `bytes` (≤ maxFrameBytes) from, with room for them: the caller takes
   * `buffer.subarray(used, used + bytes)`, then calls carved(). Its `release` goes to the write.
   */
  slabFor(bytes: number): Slab {
    let slab = this.current;
    if (slab.used + bytes > slab.buffer.length) {
      slab.retired = true;
      if (slab.pending === 0) this.recycle(slab);
      slab = this.current = this.free.pop() ?? this.fresh();
    }
    return slab;
  }

  /** `bytes` of `slab` from its `used` on are taken by a frame whose write will call `slab.release`. */
  carved(slab: Slab, bytes: number): Buffer {
    const at = slab.used;
    slab.used = at + bytes;
    slab.pending++;
    return slab.buffer.subarray(at, at + bytes);
  }

  /** A retired slab whose frames are all written: free for reuse (or for the GC beyond `kept`). */
  recycle(slab: Slab): void {
    slab.used = 0;
    slab.retired = false;
    if (this.free.length < this.kept) this.free.push(slab);
  }

  /** free slabs waiting for reuse (tests) */
  get freeCount(): number {
    return this.free.length;
  }

  private fresh(): Slab {
    this.made++;
    return new Slab(this.slabBytes, this);
  }
}
