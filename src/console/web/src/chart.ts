// A small inline SVG chart of a topic's recent runs: bars of rows written
// (MAIN and CORRECTION stacked) and a line of the compaction rate.

import { s } from './dom';
import { num, percent, time } from './format';
import type { RunView } from './types';

const W = 168;
const H = 36;

export function runsChart(newestFirst: RunView[]): SVGElement | null {
  const runs = newestFirst.filter((r) => r.state === 'succeeded' || r.state === 'failed').slice().reverse();
  if (runs.length === 0) return null;
  const rows = (r: RunView) => ({
    main: r.counts?.main_rows ?? r.progress?.main_rows ?? 0,
    correction: r.counts?.correction_rows ?? r.progress?.correction_rows ?? 0,
  });
  const max = Math.max(1, ...runs.map((r) => rows(r).main + rows(r).correction));
  const slot = W / Math.max(runs.length, 8);
  const barWidth = Math.max(2, slot - 2);
  const parts: SVGElement[] = [];
  const points: string[] = [];
  runs.forEach((r, i) => {
    const x = i * slot + 1;
    const { main, correction } = rows(r);
    const label =
      `${r.sequence !== null ? `#${r.sequence} ` : ''}${time(r.finished_at ?? r.queued_at)}: ` +
      (r.state === 'failed'
        ? 'failed'
        : `${num(main)} main rows, ${num(correction)} correction rows, compaction ${percent(r.compaction_rate)}`);
    const g = s('g', null, s('title', null, label));
    if (r.state === 'failed') {
      g.appendChild(s('rect', { x, y: H - 4, width: barWidth, height: 4, class: 'bar-failed' }));
    } else {
      const hMain = main > 0 ? Math.max(1, (main / max) * (H - 4)) : 0;
      const hCorr = correction > 0 ? Math.max(1, (correction / max) * (H - 4)) : 0;
      g.appendChild(s('rect', { x, y: H - hMain, width: barWidth, height: Math.max(hMain, 0.5), class: 'bar-main' }));
      if (hCorr > 0) {
        g.appendChild(s('rect', { x, y: H - hMain - hCorr, width: barWidth, height: hCorr, class: 'bar-correction' }));
      }
      if (r.compaction_rate !== null && r.compaction_rate !== undefined) {
        const y = 2 + (1 - Math.min(1, Math.max(0, r.compaction_rate))) * (H - 4);
        points.push(`${(x + barWidth / 2).toFixed(1)},${y.toFixed(1)}`);
      }
    }
    parts.push(g);
  });
  const last = runs[runs.length - 1];
  const summary =
    `${runs.length} recent run${runs.length === 1 ? '' : 's'}; last: ` +
    `${num(rows(last).main + rows(last).correction)} rows, compaction ${percent(last.compaction_rate)}`;
  return s(
    'svg',
    { class: 'spark', viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: 'img', 'aria-label': summary },
    parts,
    points.length > 1 ? s('polyline', { points: points.join(' '), class: 'rate-line' }) : null,
    points.map((p) => {
      const [cx, cy] = p.split(',');
      return s('circle', { cx, cy, r: 1.6, class: 'rate-dot' });
    }),
  );
}
