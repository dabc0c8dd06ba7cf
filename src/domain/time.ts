// Conversions between µs-since-epoch numbers and the forms around them. Pure.

// usToIso runs twice per stored row (event time, receive time) on the ingest hot path. Both kinds
// of time cluster within the same second, so the "YYYY-MM-DDTHH:MM:SS." prefix of the last two
// distinct seconds is kept and only the 6-digit fraction is formatted per call.
const isoSec = [Number.NaN, Number.NaN];
const isoPrefix = ['', ''];
let isoNext = 0;

/** µs since epoch -> RFC 3339 UTC with 6 fractional digits, the form PostgreSQL parses exactly. */
export function usToIso(us: number): string {
  const sec = Math.floor(us / 1_000_000);
  let prefix: string;
  if (isoSec[0] === sec) prefix = isoPrefix[0]!;
  else if (isoSec[1] === sec) prefix = isoPrefix[1]!;
  else {
    const base = new Date(sec * 1000).toISOString(); // YYYY-MM-DDTHH:MM:SS.000Z
    // Years outside 0000-9999 have a longer (expanded) form: format those in full, uncached.
    if (base.length !== 24) return usToIsoFull(us);
    prefix = base.slice(0, 20);
    isoSec[isoNext] = sec;
    isoPrefix[isoNext] = prefix;
    isoNext ^= 1;
  }
  const frac = us - sec * 1_000_000;
  return prefix + (frac >= 100_000 ? String(frac) : String(frac).padStart(6, '0')) + 'Z';
}

function usToIsoFull(us: number): string {
  const ms = Math.floor(us / 1000);
  const micros = us - ms * 1000;
  const base = new Date(ms).toISOString(); // YYYY-MM-DDTHH:MM:SS.mmmZ
  return `${base.slice(0, 23)}${String(micros).padStart(3, '0')}Z`;
}

/** A protobuf Timestamp (seconds as a decimal string, as ts-proto's forceLong=string gives it) -> µs, truncating nanos. */
export function timestampToUs(seconds: string, nanos: number): number {
  return Number(seconds) * 1_000_000 + Math.trunc(nanos / 1000);
}

/** µs -> protobuf Timestamp fields. */
export function usToTimestamp(us: number): { seconds: string; nanos: number } {
  const seconds = Math.floor(us / 1_000_000);
  return { seconds: String(seconds), nanos: (us - seconds * 1_000_000) * 1000 };
}

export function nowUs(): number {
  return Math.round((performance.timeOrigin + performance.now()) * 1000);
}
