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

// RFC 3339 date-time: full date, 'T', full time, optional fraction, 'Z' or a numeric offset. Lower-case
// 't'/'z' are allowed by RFC 3339 (section 5.6). Up to 9 fractional digits (a Timestamp's nanoseconds).
const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:[Zz]|([+-])(\d{2}):(\d{2}))$/;

/** Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil): exact for every year. */
function daysFromCivil(y: number, m: number, d: number): number {
  const yy = m <= 2 ? y - 1 : y;
  const era = Math.floor(yy / 400);
  const yoe = yy - era * 400;
  const doy = Math.floor((153 * (m + (m > 2 ? -3 : 9)) + 2) / 5) + d - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146_097 + doe - 719_468;
}

function daysInMonth(y: number, m: number): number {
  if (m === 2) return (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0 ? 29 : 28;
  return m === 4 || m === 6 || m === 9 || m === 11 ? 30 : 31;
}

/**
 * An RFC 3339 time as the exact instant, with its offset applied and every fractional digit kept
 * (seconds as a decimal string, as ts-proto's forceLong=string gives them); null when the text is not
 * one (wrong form, a field out of range, a day the month does not have, a leap second). ts-proto's own
 * fromJSON hands such strings to `Date`, which accepts far more ("June 30 2026") and turns "yesterday"
 * into NaN seconds, so ingest validates and converts with this instead.
 */
export function parseRfc3339(text: string): { seconds: string; nanos: number } | null {
  const m = RFC3339.exec(text);
  if (m === null) return null;
  const y = Number(m[1]);
  const mo = Number(m[2]);
  const d = Number(m[3]);
  const h = Number(m[4]);
  const mi = Number(m[5]);
  const s = Number(m[6]);
  if (mo < 1 || mo > 12 || d < 1 || d > daysInMonth(y, mo) || h > 23 || mi > 59 || s > 59) return null;
  let offset = 0;
  if (m[8] !== undefined) {
    const oh = Number(m[9]);
    const om = Number(m[10]);
    if (oh > 23 || om > 59) return null;
    offset = (oh * 60 + om) * 60 * (m[8] === '-' ? -1 : 1);
  }
  const seconds = daysFromCivil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s - offset;
  const nanos = m[7] === undefined ? 0 : Number(m[7].padEnd(9, '0'));
  return { seconds: String(seconds), nanos };
}
