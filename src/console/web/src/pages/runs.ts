// The runs of a topic (start one, watch it live, the recent ones) and the
// page of one run (its whole story, see run-panel.ts).

import { ApiError, errorText, get, isAbort, post, watchRun } from '../api';
import { enc, fill, h, showText } from '../dom';
import { duration, num, plural, time } from '../format';
import type { RunView, Triggered } from '../types';
import { isActive } from '../types';
import { outcomeText, runLabel, runPanel, totals } from './run-panel';
import type { RunPanel } from './run-panel';

function stateBadge(state: string): HTMLElement {
  return h('span', { class: `badge run-${state}` }, state);
}

/** Follows a run in `panel` until it ends (or `signal` aborts). */
function follower(panel: RunPanel, signal: AbortSignal, onView: (view: RunView) => void) {
  let watching: AbortController | null = null;
  signal.addEventListener('abort', () => watching?.abort());
  return (r: RunView) => {
    watching?.abort();
    watching = null;
    panel.render(r);
    onView(r);
    if (!isActive(r.state)) return;
    const ctl = new AbortController();
    watching = ctl;
    void watchRun(
      r.id,
      (view) => {
        if (watching === ctl && !signal.aborted) {
          panel.render(view);
          onView(view);
        }
      },
      ctl.signal,
    );
  };
}

function stopper(panel: RunPanel, signal: AbortSignal, say: (text: string) => void, again: (id: string) => void) {
  return async () => {
    const current = panel.current();
    if (!current) return;
    try {
      const view = await post<RunView>(`/runs/${enc(current.id)}/stop`, undefined, { signal });
      // The run may have ended, and been shown so by its watch, while the
      // request was under way: a finished run never goes back to running.
      const now = panel.current();
      if (now?.id === view.id && !isActive(now.state)) return;
      panel.render(view);
    } catch (e) {
      if (isAbort(e)) return;
      say(errorText(e));
      if (e instanceof ApiError && e.status === 409) again(current.id);
    }
  };
}

/** #/runs/{id}: one run's whole story. */
export function runPage(root: HTMLElement, id: string, signal: AbortSignal): void {
  root.replaceChildren(h('h1', { tabindex: '-1' }, `Run ${id}`), h('p', { class: 'hint' }, 'Loading…'));
  const panel = runPanel(signal);
  const note = h('p', { class: 'hint', 'aria-live': 'polite', hidden: true });
  const heading = h('h1', { tabindex: '-1' });
  const follow = follower(panel, signal, (view) => {
    heading.replaceChildren(h('span', { class: 'muted' }, `${view.topic} · `), `Run ${runLabel(view)}`);
    document.title = `${view.topic} · run ${runLabel(view)} · materializer`;
  });
  const load = (runId: string) =>
    get<RunView>(`/runs/${enc(runId)}`, { signal }).then(
      (view) => {
        if (signal.aborted) return;
        if (!root.contains(panel.element)) {
          root.replaceChildren(
            h(
              'div',
              { class: 'page-head' },
              heading,
              h('div', { class: 'actions' }, h('a', { href: `#/topics/${enc(view.topic)}/runs`, class: 'button-link' }, 'All runs of the topic'), h('a', { href: `#/topics/${enc(view.topic)}`, class: 'button-link' }, 'Mapping'), h('a', { href: '#/topics' }, 'All topics')),
            ),
            note,
            panel.element,
          );
        }
        follow(view);
      },
      (e) => {
        if (isAbort(e)) return;
        root.replaceChildren(
          h('h1', { tabindex: '-1' }, `Run ${id}`),
          h('p', { class: 'error-box', role: 'alert' }, `This run cannot be shown: ${errorText(e)}`),
          h('p', null, h('a', { href: '#/topics' }, 'All topics')),
        );
      },
    );
  panel.onStop(stopper(panel, signal, (text) => showText(note, text), (runId) => void load(runId)));
  void load(id);
}

/** #/topics/{t}/runs: start a run, watch it, the recent runs. */
export function runsPage(root: HTMLElement, topic: string, signal: AbortSignal): void {
  const runNow = h('button', { type: 'button', id: 'run-now', class: 'primary' }, 'Run now');
  const runNowStatus = h('p', { id: 'run-now-status', class: 'hint', 'aria-live': 'polite', hidden: true });
  const panel = runPanel(signal);
  const historyStatus = h('p', { class: 'hint', 'aria-live': 'polite' }, 'Loading runs…');
  const historyBody = h('tbody');
  const historyTable = h(
    'table',
    { class: 'runs', id: 'runs' },
    h('thead', null, h('tr', null, ['Run', 'State', 'Queued', 'Duration', 'Events read', 'Main rows', 'Correction rows', 'Rejected', 'Files', 'Error'].map((c) => h('th', { scope: 'col' }, c)))),
    historyBody,
  );
  root.replaceChildren(
    h(
      'div',
      { class: 'page-head' },
      h('h1', { tabindex: '-1' }, h('span', { class: 'muted' }, 'Runs · '), topic),
      h('div', { class: 'actions' }, runNow, h('a', { href: `#/topics/${enc(topic)}`, class: 'button-link' }, 'Mapping'), h('a', { href: '#/topics' }, 'All topics')),
    ),
    runNowStatus,
    panel.element,
    h(
      'section',
      { class: 'panel', 'aria-labelledby': 'history-title' },
      h('div', { class: 'panel-head' }, h('h2', { id: 'history-title' }, 'Recent runs')),
      historyStatus,
      h('div', { class: 'table-wrap' }, historyTable),
    ),
  );

  let lastState = '';
  const follow = follower(panel, signal, (r) => {
    const row = historyBody.querySelector<HTMLTableRowElement>(`tr[data-run-id="${CSS.escape(r.id)}"]`);
    if (row) {
      const fresh = runRow(r);
      fresh.className = row.className;
      row.replaceWith(fresh);
    }
    const active = isActive(r.state);
    if (!active && lastState !== '' && isActive(lastState)) runNowStatus.hidden = true;
    if (r.state !== lastState) {
      const wasActive = lastState !== '' && isActive(lastState);
      lastState = r.state;
      if (wasActive && !active) void loadHistory();
      else markSelected();
    }
  });
  const show = (r: RunView) => {
    lastState = '';
    follow(r);
  };
  panel.onStop(stopper(panel, signal, (text) => showText(runNowStatus, text), (id) => void select(id)));
  runNow.addEventListener('click', () => void trigger());

  function renderNone() {
    fill(panel.element, h('h2', { id: 'live-title' }, 'No runs yet'), h('p', { class: 'hint' }, 'Start one with “Run now”.'));
  }

  function markSelected() {
    const current = panel.current();
    historyBody.querySelectorAll('tr').forEach((tr) => {
      const on = tr.dataset.runId === current?.id;
      tr.classList.toggle('selected', on);
      const link = tr.querySelector('a');
      if (on) link?.setAttribute('aria-current', 'true');
      else link?.removeAttribute('aria-current');
    });
  }

  function runRow(r: RunView): HTMLTableRowElement {
    const t = totals(r);
    return h(
      'tr',
      { 'data-testid': 'run-row', 'data-run-id': r.id, 'data-state': r.state },
      h('th', { scope: 'row' }, h('a', { href: `#/runs/${enc(r.id)}`, title: r.id, 'data-testid': 'run-label' }, runLabel(r))),
      h('td', { 'data-label': 'State' }, stateBadge(r.state), r.outcome ? h('span', { class: 'small muted' }, ' ', outcomeText(r)) : null, r.error_class ? h('span', { class: 'small muted' }, ` ${r.error_class.class}`) : null),
      h('td', { 'data-label': 'Queued' }, h('time', { datetime: r.queued_at }, time(r.queued_at))),
      h('td', { class: 'num', 'data-label': 'Duration' }, duration(r.seconds)),
      h('td', { class: 'num', 'data-label': 'Events read', 'data-total': 'events_read' }, num(t.events_read)),
      h('td', { class: 'num', 'data-label': 'Main rows', 'data-total': 'main_rows' }, num(t.main_rows)),
      h('td', { class: 'num', 'data-label': 'Correction rows', 'data-total': 'correction_rows' }, num(t.correction_rows)),
      h('td', { class: 'num', 'data-label': 'Rejected', 'data-total': 'events_rejected' }, num(t.events_rejected)),
      h('td', { class: 'num', 'data-label': 'Files', 'data-total': 'files' }, num(t.files)),
      r.error ? h('td', { class: 'error-text small', 'data-label': 'Error' }, r.error) : h('td', { class: 'muted' }),
    );
  }

  let historyGeneration = 0;
  async function loadHistory(): Promise<RunView[] | null> {
    const mine = ++historyGeneration;
    let runs: RunView[];
    try {
      runs = await get<RunView[]>(`/topics/${enc(topic)}/runs?limit=20`, { signal });
    } catch (e) {
      if (!isAbort(e)) historyStatus.textContent = `Could not load the runs: ${errorText(e)}`;
      return null;
    }
    if (mine !== historyGeneration) return null;
    historyStatus.textContent = runs.length === 0 ? 'No runs yet.' : runs.length === 1 ? 'One run so far.' : `The last ${plural(runs.length, 'run')}, newest first.`;
    fill(historyBody, runs.map(runRow));
    markSelected();
    return runs;
  }

  async function trigger() {
    runNow.disabled = true;
    showText(runNowStatus, 'Starting a run…');
    try {
      const t = await post<Triggered>(`/topics/${enc(topic)}/runs`, undefined, { signal });
      showText(runNowStatus, `Run ${t.id} ${t.state}.`);
      await select(t.id);
    } catch (e) {
      if (isAbort(e)) return;
      showText(runNowStatus, errorText(e));
      if (e instanceof ApiError && e.status === 409) {
        // Already queued or running: show that run.
        const runs = await loadHistory();
        const active = runs?.find((r) => isActive(r.state));
        if (active) await select(active.id);
      }
    } finally {
      runNow.disabled = false;
    }
  }

  async function select(id: string) {
    try {
      const view = await get<RunView>(`/runs/${enc(id)}`, { signal });
      show(view);
      void loadHistory();
    } catch (e) {
      if (!isAbort(e)) showText(runNowStatus, `Run ${id} cannot be shown: ${errorText(e)}`);
    }
  }

  // ---- start
  void loadHistory().then((runs) => {
    if (!runs) return renderNone();
    const pick = runs.find((r) => isActive(r.state)) ?? runs[0];
    if (pick) show(pick);
    else renderNone();
  });
}
