// Formatting of numbers, sizes, times and plurals (English, fixed locale so
// that the console reads the same everywhere).

const integer = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
const oneDecimal = new Intl.NumberFormat('en-US', { minimumFractionDigits: 1, maximumFractionDigits: 1 });

export function num(n: number | null | undefined): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return '–';
  return integer.format(n);
}

/** "1 row", "2 rows", "1,234 rows". */
export function plural(n: number, singular: string, pluralForm = singular + 's'): string {
  return `${num(n)} ${n === 1 ? singular : pluralForm}`;
}

/** Bytes as B, KB, MB, GB (1 KB = 1024 bytes). */
export function bytes(n: number | null | undefined): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return '–';
  if (n < 1024) return n === 1 ? '1 byte' : `${num(n)} bytes`;
  const units = ['KB', 'MB', 'GB', 'TB', 'PB'];
  let value = n / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value >= 100 ? integer.format(value) : oneDecimal.format(value)} ${units[unit]}`;
}

/** A fraction 0..1 as a percentage. */
export function percent(rate: number | null | undefined): string {
  if (rate === null || rate === undefined || !Number.isFinite(rate)) return '–';
  return `${oneDecimal.format(rate * 100)} %`;
}

function pad(n: number): string {
  return n < 10 ? `0${n}` : String(n);
}

/** A timestamp in local time, "2024-05-01 14:03:07". */
export function time(iso: string | null | undefined): string {
  if (!iso) return '–';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return (
    `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`
  );
}

export function duration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return '–';
  if (seconds < 10) return `${oneDecimal.format(seconds)} s`;
  if (seconds < 60) return `${integer.format(seconds)} s`;
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = s % 60;
  return h > 0 ? `${h} h ${m} min` : `${m} min ${r} s`;
}
