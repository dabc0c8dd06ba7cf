// Conversions between µs-since-epoch numbers and the forms around them. Pure.

/** µs since epoch -> RFC 3339 UTC with 6 fractional digits, the form PostgreSQL parses exactly. */
export function usToIso(us: number): string {
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
