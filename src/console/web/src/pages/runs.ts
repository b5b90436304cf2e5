import { ApiError, errorText, get, isAbort, post, watchRun } from '../api';
import { enc, fill, h, showText } from '../dom';
import { bytes, duration, num, percent, plural, time } from '../format';
import type { RunFile, RunView, Triggered } from '../types';
import { isActive } from '../types';

const STATE_TEXT: Record<string, string> = {
  queued: 'Waiting for a free slot.',
  running: 'Reading partitions and writing files.',
  committing: 'Writing the manifest.',
  succeeded: '',
  failed: 'Failed: nothing of it was committed.',
  stopped: 'Stopped: nothing of it was committed; the next run redoes it.',
};

function stateBadge(state: string, id?: string): HTMLElement {
  return h('span', { id: id ?? null, class: `badge run-${state}` }, state);
}

function outcomeText(r: RunView): string {
  if (r.outcome === 'committed') return r.sequence !== null ? `Committed as #${r.sequence}.` : 'Committed.';
  if (r.outcome === 'nothing_new') return 'Nothing new to commit.';
  return r.outcome ?? '';
}

/** #/runs/{id}: finds the run's topic, then shows the runs page with it. */
export function runPage(root: HTMLElement, id: string, signal: AbortSignal): void {
  root.replaceChildren(h('h1', { tabindex: '-1' }, `Run ${id}`), h('p', { class: 'hint' }, 'Loading…'));
  get<RunView>(`/runs/${enc(id)}`, { signal }).then(
    (view) => {
      if (!signal.aborted) runsPage(root, view.topic, signal, view);
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
}

/** #/topics/{t}/runs, and #/runs/{id} with `selected`. */
export function runsPage(root: HTMLElement, topic: string, signal: AbortSignal, selected?: RunView): void {
  const runNow = h('button', { type: 'button', id: 'run-now', class: 'primary' }, 'Run now');
  const runNowStatus = h('p', { id: 'run-now-status', class: 'hint', 'aria-live': 'polite', hidden: true });
  const live = h('section', { class: 'panel live', 'aria-labelledby': 'live-title', id: 'live-run' });
  const historyStatus = h('p', { class: 'hint', 'aria-live': 'polite' }, 'Loading runs…');
  const historyBody = h('tbody');
  const historyTable = h(
    'table',
    { class: 'runs', id: 'runs' },
    h(
      'thead',
      null,
      h(
        'tr',
        null,
        ['Run', 'State', 'Queued', 'Duration', 'Events read', 'Main rows', 'Correction rows', 'Rejected', 'Files', 'Error'].map((c) =>
          h('th', { scope: 'col' }, c),
        ),
      ),
    ),
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
    live,
    h(
      'section',
      { class: 'panel', 'aria-labelledby': 'history-title' },
      h('div', { class: 'panel-head' }, h('h2', { id: 'history-title' }, 'Recent runs')),
      historyStatus,
      h('div', { class: 'table-wrap' }, historyTable),
    ),
  );

  let current: RunView | null = selected ?? null;
  let watching: AbortController | null = null;
  let lastState = '';
  let filesFor = '';
  signal.addEventListener('abort', () => watching?.abort());

  // ---- live view elements (kept across updates so focus and the progress bar stay)
  const liveTitle = h('h2', { id: 'live-title' }, 'Run');
  const runState = h('span', { id: 'run-state', class: 'badge' }, '');
  const stateNote = h('span', { class: 'hint' });
  const stopButton = h('button', { type: 'button', id: 'stop-run', class: 'danger' }, 'Stop');
  const progress = h('progress', { id: 'run-progress', max: 1, 'aria-labelledby': 'run-progress-label' });
  const progressLabel = h('span', { id: 'run-progress-label' });
  const eventsProgress = h('progress', { id: 'run-events-progress', max: 1, 'aria-labelledby': 'run-events-label' });
  const eventsLabel = h('span', { id: 'run-events-label' });
  const eventsRow = h('div', { class: 'progress-row', hidden: true }, eventsProgress, eventsLabel);
  const stats = h('dl', { class: 'stats', id: 'run-stats' });
  const times = h('dl', { class: 'meta', id: 'run-times' });
  const runError = h('p', { id: 'run-error', class: 'error-box', role: 'alert', hidden: true });
  const filesBox = h('div', { id: 'run-files-box' });
  const liveWhole = [
    h('div', { class: 'panel-head' }, liveTitle, runState, stateNote, h('span', { class: 'spacer' }), stopButton),
    h('div', { class: 'progress-row' }, progress, progressLabel),
    eventsRow,
    stats,
    times,
    runError,
    filesBox,
  ];
  stopButton.addEventListener('click', () => void stop());
  runNow.addEventListener('click', () => void trigger());

  function renderNone() {
    fill(live, h('h2', { id: 'live-title' }, 'No runs yet'), h('p', { class: 'hint' }, 'Start one with “Run now”.'));
  }

  function render(r: RunView) {
    if (live.firstChild !== liveWhole[0]) fill(live, liveWhole);
    current = r;
    liveTitle.textContent = r.sequence !== null ? `Run #${r.sequence}` : 'Run';
    liveTitle.title = r.id;
    runState.textContent = r.state;
    runState.className = `badge run-${r.state}`;
    const active = isActive(r.state);
    stateNote.textContent = r.stop_requested && active ? 'Stop requested…' : `${STATE_TEXT[r.state] ?? ''} ${outcomeText(r)}`.trim();
    stopButton.hidden = !active;
    stopButton.disabled = r.stop_requested;
    stopButton.textContent = r.stop_requested ? 'Stopping…' : 'Stop';

    const p = r.progress ?? ({} as RunView['progress']);
    const total = p.partitions_total ?? 0;
    const finished = p.partitions_finished ?? 0;
    if (total > 0) {
      progress.max = total;
      progress.value = Math.min(finished, total);
      progress.setAttribute('aria-valuenow', String(Math.min(finished, total)));
      progress.setAttribute('aria-valuemax', String(total));
      progressLabel.textContent = `${num(finished)} of ${plural(total, 'partition')} finished`;
    } else if (!active) {
      progress.max = 1;
      progress.value = 1;
      progress.setAttribute('aria-valuenow', '1');
      progress.setAttribute('aria-valuemax', '1');
      progressLabel.textContent = 'No partition had new events.';
    } else {
      progress.removeAttribute('value');
      progress.removeAttribute('aria-valuenow');
      progress.removeAttribute('aria-valuemax');
      progressLabel.textContent = r.state === 'queued' ? 'Queued.' : 'Planning…';
    }
    const planned = p.events_planned;
    if (planned !== undefined && planned !== null && planned > 0) {
      eventsRow.hidden = false;
      eventsProgress.max = planned;
      eventsProgress.value = Math.min(p.events_read, planned);
      eventsProgress.setAttribute('aria-valuenow', String(Math.min(p.events_read, planned)));
      eventsProgress.setAttribute('aria-valuemax', String(planned));
      eventsLabel.textContent = `${num(p.events_read)} of ${plural(planned, 'event')} read`;
    } else if (p.recording_bytes !== undefined && p.recording_bytes !== null && p.recording_bytes > 0) {
      // A recording's plan names its size; the read finds how many events it holds.
      const total = p.recording_bytes;
      const done = Math.min(p.recording_bytes_read ?? 0, total);
      eventsRow.hidden = false;
      eventsProgress.max = total;
      eventsProgress.value = done;
      eventsProgress.setAttribute('aria-valuenow', String(done));
      eventsProgress.setAttribute('aria-valuemax', String(total));
      eventsLabel.textContent = `${bytes(done)} of ${bytes(total)} of the recording read, ${plural(p.events_read, 'event')}`;
    } else eventsRow.hidden = true;

    const item = (label: string, value: string, id: string) => h('div', null, h('dt', null, label), h('dd', { id }, value));
    fill(
      stats,
      item('Events read', num(p.events_read), 'stat-events-read'),
      item('Rejected', num(p.events_rejected), 'stat-rejected'),
      item('Main rows', num(p.main_rows), 'stat-main-rows'),
      item('Correction rows', num(p.correction_rows), 'stat-correction-rows'),
      item('Files', num(p.files_written), 'stat-files'),
      item('Bytes written', bytes(p.bytes_written), 'stat-bytes-written'),
      item('Bytes read', bytes(p.bytes_read), 'stat-bytes-read'),
      item('Retries', num(p.retries), 'stat-retries'),
      item('Compaction', percent(r.compaction_rate), 'stat-compaction'),
    );
    const t = (label: string, iso: string | null) => h('div', null, h('dt', null, label), h('dd', null, iso ? h('time', { datetime: iso }, time(iso)) : '–'));
    fill(
      times,
      h('div', null, h('dt', null, 'Id'), h('dd', null, h('code', null, r.id))),
      t('Queued', r.queued_at),
      t('Started', r.started_at),
      t('Finished', r.finished_at),
      h('div', null, h('dt', null, 'Duration'), h('dd', null, duration(r.seconds))),
    );
    showText(runError, r.error);

    const row = historyBody.querySelector<HTMLTableRowElement>(`tr[data-run-id="${CSS.escape(r.id)}"]`);
    if (row) {
      const fresh = runRow(r);
      fresh.className = row.className;
      const link = row.querySelector('a');
      if (link?.hasAttribute('aria-current')) fresh.querySelector('a')?.setAttribute('aria-current', 'true');
      row.replaceWith(fresh);
    }
    if (!active && lastState !== '' && isActive(lastState)) runNowStatus.hidden = true;
    if (r.state !== lastState) {
      const wasActive = lastState !== '' && isActive(lastState);
      lastState = r.state;
      if (wasActive && !active) void loadHistory();
      else markSelected();
    }
    const filesKey = `${r.id}:${r.state}:${r.outcome ?? ''}`;
    if (filesFor !== filesKey) {
      filesFor = filesKey;
      if (r.state === 'succeeded' && r.outcome === 'committed') void loadFiles(r);
      else fill(filesBox, active ? null : h('p', { class: 'hint' }, r.outcome === 'nothing_new' ? 'Nothing new: no files were written.' : 'Files are listed for committed runs.'));
    }
  }

  async function loadFiles(r: RunView) {
    fill(filesBox, h('p', { class: 'hint' }, 'Loading files…'));
    try {
      const files = await get<RunFile[]>(`/runs/${enc(r.id)}/files`, { signal });
      if (current?.id !== r.id) return;
      const total = files.reduce((a, f) => a + (f.bytes ?? 0), 0);
      const rows = files.reduce((a, f) => a + (f.rows ?? 0), 0);
      fill(
        filesBox,
        h('h3', null, 'Files ', h('span', { class: 'count' }, `${plural(files.length, 'file')}, ${plural(rows, 'row')}, ${bytes(total)}`)),
        h(
          'div',
          { class: 'table-wrap' },
          h(
            'table',
            { id: 'run-files', class: 'files' },
            h('thead', null, h('tr', null, ['Path', 'Kind', 'Partition', 'Output partition', 'Rows', 'Size'].map((c) => h('th', { scope: 'col' }, c)))),
            h(
              'tbody',
              null,
              files.map((f) =>
                h(
                  'tr',
                  { 'data-testid': 'file-row', 'data-kind': f.kind },
                  h('td', { class: 'path' }, h('code', null, f.path)),
                  h('td', null, h('span', { class: `badge kind-${f.kind}` }, f.kind)),
                  h('td', null, f.partition === null || f.partition === undefined ? '–' : String(f.partition)),
                  h('td', null, f.output_partition && f.output_partition.length ? f.output_partition.map(([k, v]) => `${k}=${v === null ? 'NULL' : String(v)}`).join(', ') : '–'),
                  h('td', { class: 'num' }, num(f.rows)),
                  h('td', { class: 'num', title: `${num(f.bytes)} bytes` }, bytes(f.bytes)),
                ),
              ),
            ),
          ),
        ),
      );
    } catch (e) {
      if (isAbort(e)) return;
      fill(filesBox, h('p', { class: 'hint' }, `Files not available: ${errorText(e)}`));
    }
  }

  function follow(r: RunView) {
    watching?.abort();
    watching = null;
    lastState = '';
    render(r);
    if (!isActive(r.state)) return;
    const ctl = new AbortController();
    watching = ctl;
    void watchRun(
      r.id,
      (view) => {
        if (watching === ctl && !signal.aborted) render(view);
      },
      ctl.signal,
    );
  }

  function markSelected() {
    historyBody.querySelectorAll('tr').forEach((tr) => {
      const on = tr.dataset.runId === current?.id;
      tr.classList.toggle('selected', on);
      const link = tr.querySelector('a');
      if (on) link?.setAttribute('aria-current', 'true');
      else link?.removeAttribute('aria-current');
    });
  }

  function runRow(r: RunView): HTMLTableRowElement {
    const c = r.counts;
    const p = r.progress;
    return h(
      'tr',
      { 'data-testid': 'run-row', 'data-run-id': r.id, 'data-state': r.state },
      h('th', { scope: 'row' }, h('a', { href: `#/runs/${enc(r.id)}`, title: r.id }, r.sequence !== null ? `#${r.sequence}` : r.id)),
      h('td', { 'data-label': 'State' }, stateBadge(r.state), r.outcome ? h('span', { class: 'small muted' }, ' ', outcomeText(r)) : null),
      h('td', { 'data-label': 'Queued' }, h('time', { datetime: r.queued_at }, time(r.queued_at))),
      h('td', { class: 'num', 'data-label': 'Duration' }, duration(r.seconds)),
      h('td', { class: 'num', 'data-label': 'Events read' }, num(c?.events_read ?? p?.events_read)),
      h('td', { class: 'num', 'data-label': 'Main rows' }, num(c?.main_rows ?? p?.main_rows)),
      h('td', { class: 'num', 'data-label': 'Correction rows' }, num(c?.correction_rows ?? p?.correction_rows)),
      h('td', { class: 'num', 'data-label': 'Rejected' }, num(c?.events_rejected ?? p?.events_rejected)),
      h('td', { class: 'num', 'data-label': 'Files' }, num(r.files ?? p?.files_written)),
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
    fill(
      historyBody,
      runs.map(runRow),
    );
    markSelected();
    return runs;
  }

  async function trigger() {
    runNow.disabled = true;
    showText(runNowStatus, 'Starting a run…');
    try {
      const t = await post<Triggered>(`/topics/${enc(topic)}/runs`, undefined, { signal });
      showText(runNowStatus, `Run ${t.id} ${t.state}.`);
      await select(t.id, true);
    } catch (e) {
      if (isAbort(e)) return;
      showText(runNowStatus, errorText(e));
      if (e instanceof ApiError && e.status === 409) {
        // Already queued or running: show that run.
        const runs = await loadHistory();
        const active = runs?.find((r) => isActive(r.state));
        if (active) await select(active.id, true);
      }
    } finally {
      runNow.disabled = false;
    }
  }

  async function select(id: string, push: boolean) {
    try {
      const view = await get<RunView>(`/runs/${enc(id)}`, { signal });
      if (push && location.hash !== `#/runs/${enc(id)}`) history.pushState(null, '', `#/runs/${enc(id)}`);
      follow(view);
      void loadHistory();
    } catch (e) {
      if (!isAbort(e)) showText(runNowStatus, `Run ${id} cannot be shown: ${errorText(e)}`);
    }
  }

  async function stop() {
    if (!current) return;
    stopButton.disabled = true;
    try {
      const view = await post<RunView>(`/runs/${enc(current.id)}/stop`, undefined, { signal });
      // The run may have ended, and been shown so by its watch, while the
      // request was under way: a finished run never goes back to running.
      if (current?.id === view.id && !isActive(current.state)) return;
      render(view);
    } catch (e) {
      if (isAbort(e)) return;
      showText(runNowStatus, errorText(e));
      stopButton.disabled = false;
      if (e instanceof ApiError && e.status === 409 && current) await select(current.id, false);
    }
  }

  // ---- start
  if (current) follow(current);
  void loadHistory().then((runs) => {
    if (current || !runs) {
      if (!current && !runs) renderNone();
      return;
    }
    const pick = runs.find((r) => isActive(r.state)) ?? runs[0];
    if (pick) follow(pick);
    else renderNone();
  });
}
