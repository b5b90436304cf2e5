// A line diff (longest common subsequence) of two texts, for showing a
// mapping saved elsewhere beside the analyst's own version.

export type DiffLine = { kind: 'same' | 'mine' | 'theirs'; text: string };

/** The lines of `theirs` and `mine`, in order, each marked by where it is. */
export function diffLines(theirs: string, mine: string): DiffLine[] {
  const a = theirs.split('\n');
  const b = mine.split('\n');
  // Mappings are short; a texts' product past this is shown whole, not diffed.
  if (a.length * b.length > 4_000_000) {
    return [...a.map((text) => ({ kind: 'theirs' as const, text })), ...b.map((text) => ({ kind: 'mine' as const, text }))];
  }
  const n = a.length;
  const m = b.length;
  const lcs: Uint32Array[] = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      lcs[i][j] = a[i] === b[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
    }
  }
  const out: DiffLine[] = [];
  let i = 0;
  let j = 0;
  while (i < n && j < m) {
    if (a[i] === b[j]) {
      out.push({ kind: 'same', text: a[i] });
      i++;
      j++;
    } else if (lcs[i + 1][j] >= lcs[i][j + 1]) {
      out.push({ kind: 'theirs', text: a[i++] });
    } else {
      out.push({ kind: 'mine', text: b[j++] });
    }
  }
  while (i < n) out.push({ kind: 'theirs', text: a[i++] });
  while (j < m) out.push({ kind: 'mine', text: b[j++] });
  return out;
}
