/** Horizontal bar charts in plain SVG: one row per label, stacked segments. */
export interface Bar { label: string; segments: { value: number; className: string; title: string }[]; note?: string }

export function BarChart({ title, bars, unit }: { title: string; bars: Bar[]; unit: string }) {
  const max = Math.max(1, ...bars.map((b) => b.segments.reduce((s, x) => s + x.value, 0)));
  const row = 22;
  const labelWidth = 170;
  const width = 560;
  return (
    <figure className="chart" data-chart={title}>
      <figcaption>{title}</figcaption>
      <svg width={width + labelWidth + 90} height={bars.length * row + 4} role="img" aria-label={title}>
        {bars.map((b, i) => {
          let x = labelWidth;
          const total = b.segments.reduce((s, seg) => s + seg.value, 0);
          return (
            <g key={b.label} transform={`translate(0 ${i * row})`}>
              <text x={labelWidth - 6} y={15} textAnchor="end">{b.label.length > 24 ? `${b.label.slice(0, 23)}…` : b.label}</text>
              {b.segments.map((seg, k) => {
                const w = (seg.value / max) * width;
                const rect = <rect key={k} x={x} y={3} width={Math.max(0, w)} height={row - 6} className={seg.className}><title>{seg.title}</title></rect>;
                x += w;
                return rect;
              })}
              <text x={x + 6} y={15}>{b.note ?? `${total} ${unit}`}</text>
            </g>
          );
        })}
      </svg>
    </figure>
  );
}
