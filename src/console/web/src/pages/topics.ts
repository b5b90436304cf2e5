import { ApiError, errorText, get, isAbort } from '../api';
import { runsChart } from '../chart';
import { enc, fill, h } from '../dom';
import { num, percent, plural, time } from '../format';
import type { LastRun, RunView, TopicSummary } from '../types';

/** Runs `work` over `items`, at most `limit` at a time. */
async function pool<T>(items: T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await work(items[next++]);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

function stateCell(t: TopicSummary): HTMLElement {
  const badge = h('span', { class: `badge state-${t.status}` }, t.status);
  const cell = h('div', { class: 'state' }, badge);
  if (t.running) cell.append(' ', h('a', { class: 'badge state-running', href: `#/topics/${enc(t.name)}/runs` }, 'running'));
  if (t.error_at) {
    const at = [t.error_at.file, t.error_at.line, t.error_at.column].filter((x) => x !== null && x !== undefined).join(':');
    cell.append(h('code', { class: 'error-at' }, at));
  }
  if (t.error) cell.append(h('p', { class: 'error-text small' }, t.error));
  if (t.status === 'stale') cell.append(h('p', { class: 'hint' }, 'The last good configuration is served.'));
  return cell;
}

function lastRunFrom(runs: RunView[]): LastRun | null {
  const r = runs.find((x) => x.state === 'succeeded' && x.outcome === 'committed' && x.sequence !== null);
  if (!r) return null;
  return {
    sequence: r.sequence as number,
    committed_at: r.finished_at ?? r.queued_at,
    main_rows: r.counts?.main_rows ?? r.progress.main_rows,
    correction_rows: r.counts?.correction_rows ?? r.progress.correction_rows,
    events_read: r.counts?.events_read ?? r.progress.events_read,
    compaction_rate: r.compaction_rate,
  };
}

function lastRunCell(cell: HTMLElement, last: LastRun | null | undefined): void {
  if (!last) {
    fill(cell, h('span', { class: 'muted' }, 'none yet'));
    return;
  }
  fill(
    cell,
    h('div', null, h('strong', null, `#${last.sequence}`), ' ', h('time', { datetime: last.committed_at, class: 'muted' }, time(last.committed_at))),
    h(
      'div',
      { class: 'small' },
      plural(last.main_rows, 'main row'),
      last.correction_rows ? `, ${plural(last.correction_rows, 'correction row')}` : '',
      last.compaction_rate !== null && last.compaction_rate !== undefined ? ` · compaction ${percent(last.compaction_rate)}` : '',
    ),
  );
}

export function topicsPage(root: HTMLElement, signal: AbortSignal): void {
  const status = h('p', { class: 'hint', 'aria-live': 'polite' }, 'Loading topics…');
  const refresh = h('button', { type: 'button', id: 'refresh-topics' }, 'Refresh');
  const body = h('tbody');
  const table = h(
    'table',
    { class: 'topics', id: 'topics' },
    h(
      'thead',
      null,
      h(
        'tr',
        null,
        h('th', { scope: 'col' }, 'Topic'),
        h('th', { scope: 'col' }, 'Event type'),
        h('th', { scope: 'col' }, 'Keys'),
        h('th', { scope: 'col' }, 'Format'),
        h('th', { scope: 'col' }, 'State'),
        h('th', { scope: 'col' }, 'Last committed run'),
        h('th', { scope: 'col' }, 'Recent runs ', h('span', { class: 'legend' }, h('span', { class: 'key-rows' }, 'rows'), ' ', h('span', { class: 'key-rate' }, 'compaction'))),
      ),
    ),
    body,
  );
  root.replaceChildren(
    h('div', { class: 'page-head' }, h('h1', { tabindex: '-1' }, 'Topics'), h('div', { class: 'actions' }, refresh)),
    status,
    h('div', { class: 'table-wrap' }, table),
  );

  let generation = 0;
  async function load() {
    const mine = ++generation;
    refresh.disabled = true;
    let topics: TopicSummary[];
    try {
      topics = await get<TopicSummary[]>('/topics', { signal });
    } catch (e) {
      if (!isAbort(e)) status.textContent = `Could not load the topics: ${errorText(e)}`;
      refresh.disabled = false;
      return;
    }
    if (mine !== generation) return;
    status.textContent = topics.length === 0 ? 'No topics are configured.' : plural(topics.length, 'topic');
    const cells = new Map<string, { last: HTMLElement; chart: HTMLElement }>();
    fill(
      body,
      topics.map((t) => {
        const last = h('td', { 'data-label': 'Last committed run' });
        const chart = h('td', { 'data-label': 'Recent runs', class: 'chart-cell' }, h('span', { class: 'muted small' }, '…'));
        cells.set(t.name, { last, chart });
        lastRunCell(last, t.last_run);
        const keys = t.partitioning_key;
        return h(
          'tr',
          { 'data-testid': 'topic-row', 'data-topic': t.name },
          h(
            'th',
            { scope: 'row', 'data-label': 'Topic' },
            h('a', { href: `#/topics/${enc(t.name)}`, 'data-testid': 'open-workbench', class: 'topic-name' }, t.name),
            h('div', { class: 'row-links small' }, h('a', { href: `#/topics/${enc(t.name)}/runs`, 'data-testid': 'open-runs', 'aria-label': `Runs of ${t.name}` }, 'runs')),
          ),
          h('td', { 'data-label': 'Event type' }, t.event_type ? h('code', null, t.event_type) : h('span', { class: 'muted' }, '–')),
          h(
            'td',
            { 'data-label': 'Keys' },
            keys && keys.length ? h('div', null, h('span', { class: 'muted small' }, 'partition '), keys.map((k, i) => [i ? ', ' : '', h('code', null, k)])) : null,
            t.ordering_key ? h('div', null, h('span', { class: 'muted small' }, 'order '), h('code', null, t.ordering_key)) : null,
            !(keys && keys.length) && !t.ordering_key ? h('span', { class: 'muted' }, '–') : null,
          ),
          h('td', { 'data-label': 'Format' }, t.format ?? h('span', { class: 'muted' }, '–')),
          h('td', { 'data-label': 'State' }, stateCell(t)),
          last,
          chart,
        );
      }),
    );
    refresh.disabled = false;
    await pool(topics, 4, async (t) => {
      const cell = cells.get(t.name)!;
      try {
        const runs = await get<RunView[]>(`/topics/${enc(t.name)}/runs?limit=20`, { signal });
        if (mine !== generation) return;
        const chart = runsChart(runs);
        fill(cell.chart, chart ?? h('span', { class: 'muted small' }, 'no runs yet'));
        if (!t.last_run) lastRunCell(cell.last, lastRunFrom(runs));
      } catch (e) {
        if (isAbort(e) || mine !== generation) return;
        const text = e instanceof ApiError && (e.status === 404 || e.status === 422) ? 'no runs' : `runs not available: ${errorText(e)}`;
        fill(cell.chart, h('span', { class: 'muted small' }, text));
      }
    });
    if (mine === generation && topics.length) status.textContent = `${plural(topics.length, 'topic')} · ${num(topics.filter((t) => t.status === 'ok').length)} ok`;
  }
  refresh.addEventListener('click', () => void load());
  void load();
}
