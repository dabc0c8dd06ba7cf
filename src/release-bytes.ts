// Giving a large buffer's memory back the moment the process is done with it, instead of whenever the
// garbage collector gets to its ArrayBuffer.
//
// A Buffer's bytes live outside V8's heap (malloc'd; 64 KiB and up their own mapping, see MALLOC_ENV
// in src/config/memory-budget.ts) and are freed only when a collection finds the Buffer dead. Under CPU
// load the collector's concurrent threads run late, and with 10 streams catching up on 512 KiB records
// a few hundred MB of dead buffers an interval piled up in the resident set (bench/README.md, issue 13
// fourth pass). Detaching the ArrayBuffer (transfer to length 0) frees its bytes at once.

/** Smaller buffers are left to the collector: releasing them saves little and most share a pool or slab. */
const MIN_RELEASE_BYTES = 64 * 1024;

type Transferable = ArrayBuffer & { transfer?: (length: number) => ArrayBuffer };

/** ArrayBuffers that back one view alone, though the view does not span all of it (markSole). */
const soleBuffers = new WeakSet<ArrayBuffer>();

/** Records that `b` is the only view anything holds of its ArrayBuffer, so releaseBytes(b) may free it. */
export function markSole(b: Uint8Array): void {
  if (b.buffer instanceof ArrayBuffer) soleBuffers.add(b.buffer);
}

/**
 * Frees the memory of `b` now, when `b` is large and the whole of its own ArrayBuffer or marked its
 * sole view (so never a slice of Buffer's pool or a view into a shared slab). Afterwards `b` and any other view of that
 * ArrayBuffer have length 0: call it only on a buffer nothing will read again - one this code made
 * itself and handed to nobody, or whose consumer has said it is done (a write callback). Returns
 * whether it released.
 */
export function releaseBytes(b: Uint8Array): boolean {
  // The size first: reading `b.buffer` of a small on-heap typed array makes V8 materialize an
  // ArrayBuffer for it (every response and record passes through here; almost all are small).
  if (b.byteLength < MIN_RELEASE_BYTES) return false;
  const ab = b.buffer as Transferable;
  if (!(ab instanceof ArrayBuffer)) return false;
  if ((b.byteOffset !== 0 || ab.byteLength !== b.byteLength) && !soleBuffers.has(ab)) return false;
  if (typeof ab.transfer !== 'function') return false;
  try {
    ab.transfer(0);
    return true;
  } catch {
    // Not detachable (an embedder's buffer): the collector frees it as before.
    return false;
  }
}
