/** A side-by-side line diff of two JSON values (keys sorted, so only real changes show). */

function canonical(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(canonical);
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.keys(value as object).sort().map((k) => [k, canonical((value as Record<string, unknown>)[k])]));
  }
  return value;
}

type Row = { left?: string; right?: string; kind: 'same' | 'changed' };

/** Longest-common-subsequence alignment of two line lists. */
export function alignLines(a: string[], b: string[]): Row[] {
  const n = a.length;
  const m = b.length;
  const lcs = Array.from({ length: n + 1 }, () => new Array<number>(m + 1).fill(0));
  for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--) lcs[i]![j] = a[i] === b[j] ? lcs[i + 1]![j + 1]! + 1 : Math.max(lcs[i + 1]![j]!, lcs[i]![j + 1]!);
  const rows: Row[] = [];
  let i = 0;
  let j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && a[i] === b[j]) { rows.push({ left: a[i], right: b[j], kind: 'same' }); i++; j++; }
    else if (j < m && (i === n || lcs[i]![j + 1]! >= lcs[i + 1]![j]!)) { rows.push({ right: b[j], kind: 'changed' }); j++; }
    else { rows.push({ left: a[i], kind: 'changed' }); i++; }
  }
  return rows;
}

export function JsonDiff({ before, after, leftTitle, rightTitle }: { before: unknown; after: unknown; leftTitle: string; rightTitle: string }) {
  const rows = alignLines(JSON.stringify(canonical(before), null, 2).split('\n'), JSON.stringify(canonical(after), null, 2).split('\n'));
  return (
    <table className="diff" data-diff="">
      <thead><tr><th>{leftTitle}</th><th>{rightTitle}</th></tr></thead>
      <tbody>
        {rows.map((r, k) => (
          <tr key={k} className={r.kind}>
            <td className={r.left !== undefined && r.kind === 'changed' ? 'removed' : ''}><pre>{r.left ?? ''}</pre></td>
            <td className={r.right !== undefined && r.kind === 'changed' ? 'added' : ''}><pre>{r.right ?? ''}</pre></td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
