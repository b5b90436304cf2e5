// One run's whole story, live while it goes on: its state (with the class
// of a failure and what to do about it), progress, the counts as the API
// gives them (read = into MAIN + superseded + corrections + rejected), the
// rate and the time of each stage, each partition's cursors before and
// after, and, once committed, every file (rows, bytes, SHA-256, a preview of
// its first rows, a download) and the manifest.

import { errorText, download, get, isAbort } from '../api';
import { enc, fill, h, showText } from '../dom';
import { COMPACTION_MEANING, eventsSum, figure } from '../counts';
import { bytes, duration, num, percent, plural, time } from '../format';
import type { Counts, FilePreview, Progress, RunFile, RunView } from '../types';
import { isActive } from '../types';

const STATE_TEXT: Record<string, string> = {
  queued: 'Waiting for a free slot.',
  running: 'Reading partitions and writing files.',
  committing: 'Writing the manifest.',
  succeeded: '',
  failed: 'Failed: nothing of it was committed.',
  stopped: 'Stopped: nothing of it was committed; the next run redoes it.',
};

/** What a run is called: the server's label (`#3`, `nothing new after #2`), else its id. */
export function runLabel(r: RunView): string {
  if (r.label) return r.label;
  if (r.outcome === 'committed' && r.sequence !== null) return `#${r.sequence}`;
  if (r.outcome === 'nothing_new') return r.sequence !== null ? `nothing new after #${r.sequence}` : 'nothing new';
  return r.id;
}

export function outcomeText(r: RunView): string {
  if (r.outcome === 'committed') return r.sequence !== null ? `Committed as #${r.sequence}.` : 'Committed.';
  if (r.outcome === 'nothing_new') return r.sequence !== null ? `Nothing new since #${r.sequence}; nothing written.` : 'Nothing new; nothing written.';
  return r.outcome ?? '';
}

/**
 * The totals of a run, from one place: the counts of its summary once it
 * has one, else its counters (fixed by the server when the run ended), so
 * that the panel and the history row show the same numbers.
 */
export function totals(r: RunView): { events_read: number; events_rejected: number; main_rows: number; correction_rows: number; files: number } {
  const c: Counts | null = r.counts;
  const p: Progress = r.progress;
  return {
    events_read: c?.events_read ?? p.events_read,
    events_rejected: c?.events_rejected ?? p.events_rejected,
    main_rows: c?.main_rows ?? p.main_rows,
    correction_rows: c?.correction_rows ?? p.correction_rows,
    files: r.files ?? p.files_written,
  };
}

export interface RunPanel {
  element: HTMLElement;
  render: (r: RunView) => void;
  current: () => RunView | null;
  onStop: (handler: () => void) => void;
}

export function runPanel(signal: AbortSignal): RunPanel {
  const element = h('section', { class: 'panel live', 'aria-labelledby': 'live-title', id: 'live-run' });
  const title = h('h2', { id: 'live-title' }, 'Run');
  const runState = h('span', { id: 'run-state', class: 'badge' }, '');
  const stateNote = h('span', { class: 'hint', id: 'run-state-note' });
  const stopButton = h('button', { type: 'button', id: 'stop-run', class: 'danger' }, 'Stop');
  const pageLink = h('a', { id: 'run-page-link', class: 'small' }, 'Its page');
  const progress = h('progress', { id: 'run-progress', max: 1, 'aria-labelledby': 'run-progress-label' });
  const progressLabel = h('span', { id: 'run-progress-label' });
  const eventsProgress = h('progress', { id: 'run-events-progress', max: 1, 'aria-labelledby': 'run-events-label' });
  const eventsLabel = h('span', { id: 'run-events-label' });
  const eventsRow = h('div', { class: 'progress-row', hidden: true }, eventsProgress, eventsLabel);
  const failure = h('div', { id: 'run-failure', class: 'error-box', role: 'alert', hidden: true });
  const runError = h('p', { id: 'run-error' });
  const stats = h('dl', { class: 'stats', id: 'run-stats' });
  const breakdown = h('div', { id: 'run-counts' });
  const times = h('dl', { class: 'meta', id: 'run-times' });
  const stages = h('div', { id: 'run-timings' });
  const cursors = h('div', { id: 'run-cursors' });
  const filesBox = h('div', { id: 'run-files-box' });
  const filePreview = h('div', { id: 'file-preview', class: 'file-preview', hidden: true });
  const manifestBox = h('div', { id: 'run-manifest-box' });
  const whole = [
    h('div', { class: 'panel-head' }, title, runState, stateNote, h('span', { class: 'spacer' }), pageLink, stopButton),
    h('div', { class: 'progress-row' }, progress, progressLabel),
    eventsRow,
    failure,
    stats,
    breakdown,
    times,
    stages,
    cursors,
    filesBox,
    filePreview,
    manifestBox,
  ];
  let current: RunView | null = null;
  let filesFor = '';
  let stopHandler: () => void = () => {};
  stopButton.addEventListener('click', () => stopHandler());

  function setBar(bar: HTMLProgressElement, value: number | null, max: number) {
    if (value === null) {
      bar.removeAttribute('value');
      bar.removeAttribute('aria-valuenow');
      bar.removeAttribute('aria-valuemax');
      return;
    }
    bar.max = max;
    bar.value = value;
    bar.setAttribute('aria-valuenow', String(value));
    bar.setAttribute('aria-valuemax', String(max));
  }

  function render(r: RunView) {
    if (element.firstChild !== whole[0]) fill(element, whole);
    current = r;
    title.textContent = `Run ${runLabel(r)}`;
    title.title = r.id;
    runState.textContent = r.state;
    runState.className = `badge run-${r.state}`;
    const active = isActive(r.state);
    stateNote.textContent = r.stop_requested && active ? 'Stop requested…' : `${STATE_TEXT[r.state] ?? ''} ${outcomeText(r)}`.trim();
    stopButton.hidden = !active;
    stopButton.disabled = r.stop_requested;
    stopButton.textContent = r.stop_requested ? 'Stopping…' : 'Stop';
    pageLink.href = `#/runs/${enc(r.id)}`;
    pageLink.hidden = location.hash === `#/runs/${enc(r.id)}`;

    const p = r.progress;
    const total = p.partitions_total ?? 0;
    const finished = Math.min(p.partitions_finished ?? 0, total);
    const ended = r.state === 'failed' || r.state === 'stopped';
    if (total > 0) {
      setBar(progress, finished, total);
      progressLabel.textContent = `${num(finished)} of ${plural(total, 'partition')} finished${ended ? ` when it ${r.state === 'failed' ? 'failed' : 'was stopped'}` : ''}`;
    } else if (ended) {
      setBar(progress, 0, 1);
      progressLabel.textContent = r.state === 'failed' ? 'Failed before any partition was read.' : 'Stopped before any partition was read.';
    } else if (!active) {
      setBar(progress, 1, 1);
      progressLabel.textContent = 'No partition had new events.';
    } else {
      setBar(progress, null, 1);
      progressLabel.textContent = r.state === 'queued' ? 'Queued.' : 'Planning…';
    }
    const planned = p.events_planned;
    if (planned !== undefined && planned !== null && planned > 0) {
      eventsRow.hidden = false;
      setBar(eventsProgress, Math.min(p.events_read, planned), planned);
      eventsLabel.textContent = `${num(p.events_read)} of ${plural(planned, 'event')} read`;
    } else if (p.recording_bytes !== undefined && p.recording_bytes !== null && p.recording_bytes > 0) {
      // A recording's plan names its size; the read finds how many events it holds.
      const size = p.recording_bytes;
      const done = Math.min(p.recording_bytes_read ?? 0, size);
      eventsRow.hidden = false;
      setBar(eventsProgress, done, size);
      eventsLabel.textContent = `${bytes(done)} of ${bytes(size)} of the recording read, ${plural(p.events_read, 'event')}`;
    } else eventsRow.hidden = true;

    renderFailure(r);
    const t = totals(r);
    const item = (label: string, value: string, id: string, hint?: string) => h('div', { title: hint ?? null }, h('dt', null, label), h('dd', { id }, value));
    fill(
      stats,
      item('Events read', num(t.events_read), 'stat-events-read'),
      item('Rejected', num(t.events_rejected), 'stat-rejected'),
      item('Main rows', num(t.main_rows), 'stat-main-rows'),
      item('Correction rows', num(t.correction_rows), 'stat-correction-rows'),
      item('Files', num(t.files), 'stat-files'),
      item('Bytes written', bytes(p.bytes_written), 'stat-bytes-written'),
      item('Bytes read', bytes(p.bytes_read), 'stat-bytes-read'),
      item('Retries', num(p.retries), 'stat-retries'),
      item('Compaction', percent(r.compaction_rate), 'stat-compaction', COMPACTION_MEANING),
      item('Events/s', r.events_per_second === null || r.events_per_second === undefined ? '–' : num(r.events_per_second), 'stat-rate', 'Events read per second of the run'),
    );
    renderBreakdown(r);
    const at = (label: string, iso: string | null) => h('div', null, h('dt', null, label), h('dd', null, iso ? h('time', { datetime: iso }, time(iso)) : '–'));
    fill(
      times,
      h('div', null, h('dt', null, 'Id'), h('dd', null, h('code', null, r.id))),
      at('Queued', r.queued_at),
      at('Started', r.started_at),
      at('Finished', r.finished_at),
      h('div', null, h('dt', null, 'Duration'), h('dd', { id: 'run-duration' }, duration(r.seconds))),
    );
    renderStages(r);
    renderCursors(r);

    const filesKey = `${r.id}:${r.state}:${r.outcome ?? ''}`;
    if (filesFor !== filesKey) {
      filesFor = filesKey;
      filePreview.hidden = true;
      fill(manifestBox);
      if (r.state === 'succeeded' && r.outcome === 'committed') void loadFiles(r);
      else fill(filesBox, active ? null : h('p', { class: 'hint' }, r.outcome === 'nothing_new' ? 'Nothing new: no files were written.' : 'Files are listed for committed runs.'));
    }
  }

  function renderFailure(r: RunView) {
    showText(runError, r.error);
    if (!r.error) {
      failure.hidden = true;
      return;
    }
    const c = r.error_class;
    fill(
      failure,
      c ? h('p', null, h('strong', { id: 'run-error-class' }, `${c.title} (${c.class})`)) : null,
      runError,
      c
        ? h(
            'p',
            { id: 'run-advice', class: 'small' },
            c.advice,
            ' ',
            c.retryable ? 'Running it again as it is may succeed.' : 'Running it again as it is fails the same way.',
            ` (materializer run exits with ${c.exit_code}.)`,
          )
        : null,
    );
    failure.hidden = false;
  }

  function renderBreakdown(r: RunView) {
    const c = r.counts;
    if (!c) return fill(breakdown);
    const cell = (label: string, value: number | null | undefined, id: string) => figure(id, label, num(value));
    fill(
      breakdown,
      h('h3', null, 'Where the events went'),
      h('dl', { class: 'counts sum' }, eventsSum(c, 'run-count', 'Every event the run read')),
      h(
        'dl',
        { class: 'counts' },
        cell('Main rows', c.main_rows, 'run-count-main-rows'),
        cell('Correction rows', c.correction_rows, 'run-count-correction-rows'),
        cell('Older rows (history)', c.older_rows ?? 0, 'run-count-older-rows'),
        cell('Deletes', c.deletes ?? 0, 'run-count-deletes'),
        cell('KEYS rows', r.keys_rows, 'run-count-keys-rows'),
      ),
    );
  }

  function renderStages(r: RunView) {
    const t = r.timings;
    if (!t) {
      fill(stages, isActive(r.state) || !r.counts ? null : h('p', { class: 'hint' }, 'Time per stage: not recorded for runs read back from their manifest.'));
      return;
    }
    const rows: [string, number, string][] = [
      ['Plan', t.plan, 'Finding the committed run, fixing the plan'],
      ['Read and decode', t.read, 'Reading the partitions, decoding the events'],
      ['Decide, map and write', t.map_write, 'Classes per key, the mapping, the files and the key state'],
      ['of which key state', t.key_state, 'Looking the keys up in the key state and writing its segments'],
      ['Commit', t.commit, 'The manifest, post-commit files and the source’s cursors'],
    ];
    const whole = t.plan + t.read + t.map_write + t.commit;
    fill(
      stages,
      h('h3', null, 'Time per stage'),
      h(
        'table',
        { class: 'stages', id: 'run-stages' },
        h('caption', { class: 'sr-only' }, 'Seconds per stage'),
        h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'Stage'), h('th', { scope: 'col', class: 'num' }, 'Seconds'), h('th', { scope: 'col', class: 'num' }, 'Share'))),
        h(
          'tbody',
          null,
          rows.map(([name, s, what]) => h('tr', { title: what }, h('th', { scope: 'row' }, name), h('td', { class: 'num' }, s.toFixed(3)), h('td', { class: 'num' }, whole > 0 ? percent(s / whole) : '–'))),
        ),
      ),
    );
  }

  function renderCursors(r: RunView) {
    const parts = r.partitions;
    if (!parts || parts.length === 0) return fill(cursors);
    fill(
      cursors,
      h('h3', null, 'Cursors per partition'),
      h(
        'div',
        { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': 'Cursors per partition' },
        h(
          'table',
          { class: 'cursors', id: 'run-cursor-table' },
          h('thead', null, h('tr', null, ['Partition', 'Before (read after)', 'After (read up to)', 'Events'].map((c) => h('th', { scope: 'col' }, c)))),
          h(
            'tbody',
            null,
            parts.map((c) => h('tr', { 'data-partition': c.partition }, h('th', { scope: 'row' }, c.partition), h('td', null, h('code', null, c.before)), h('td', null, h('code', null, c.after)), h('td', { class: 'num' }, num(c.events)))),
          ),
        ),
      ),
    );
  }

  async function loadFiles(r: RunView) {
    fill(filesBox, h('p', { class: 'hint' }, 'Loading files…'));
    let files: RunFile[];
    try {
      files = await get<RunFile[]>(`/runs/${enc(r.id)}/files`, { signal });
    } catch (e) {
      if (!isAbort(e)) fill(filesBox, h('p', { class: 'hint' }, `Files not available: ${errorText(e)}`));
      return;
    }
    if (current?.id !== r.id) return;
    const size = files.reduce((a, f) => a + (f.bytes ?? 0), 0);
    const rows = files.reduce((a, f) => a + (f.rows ?? 0), 0);
    const base = `/runs/${enc(r.id)}/files`;
    fill(
      filesBox,
      h('h3', null, 'Files ', h('span', { class: 'count' }, `${plural(files.length, 'file')}, ${plural(rows, 'row')}, ${bytes(size)}`)),
      h(
        'div',
        { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': 'Files of the run' },
        h(
          'table',
          { id: 'run-files', class: 'files' },
          h('thead', null, h('tr', null, ['Path', 'Kind', 'Partition', 'Output partition', 'Rows', 'Size', 'SHA-256', 'File'].map((c) => h('th', { scope: 'col' }, c)))),
          h(
            'tbody',
            null,
            files.map((f) => {
              const name = f.path.split('/').pop() ?? f.path;
              const show = h('button', { type: 'button', class: 'small-button', 'data-testid': 'preview-file', 'aria-label': `First rows of ${f.path}` }, 'First rows');
              const save = h('button', { type: 'button', class: 'small-button', 'data-testid': 'download-file', 'aria-label': `Download ${f.path}` }, 'Download');
              show.addEventListener('click', () => void previewFile(r, f));
              save.addEventListener('click', () => {
                save.disabled = true;
                download(`${base}/content?path=${enc(f.path)}`, name, signal)
                  .catch((e) => {
                    if (!isAbort(e)) save.title = `Not downloaded: ${errorText(e)}`;
                  })
                  .finally(() => (save.disabled = false));
              });
              return h(
                'tr',
                { 'data-testid': 'file-row', 'data-kind': f.kind, 'data-path': f.path },
                h('td', { class: 'path' }, h('code', null, f.path)),
                h('td', null, h('span', { class: `badge kind-${f.kind}` }, f.kind)),
                h('td', null, f.partition === null || f.partition === undefined ? '–' : String(f.partition)),
                h('td', null, f.output_partition && f.output_partition.length ? f.output_partition.map(([k, v]) => `${k}=${v === null ? 'NULL' : String(v)}`).join(', ') : '–'),
                h('td', { class: 'num' }, num(f.rows)),
                h('td', { class: 'num', title: `${num(f.bytes)} bytes` }, bytes(f.bytes)),
                h('td', null, f.sha256 ? h('code', { class: 'sha', title: f.sha256 }, f.sha256.slice(0, 12) + '…') : '–'),
                h('td', null, h('span', { class: 'button-group' }, show, save)),
              );
            }),
          ),
        ),
      ),
    );
    const showManifest = h('button', { type: 'button', id: 'show-manifest' }, 'Show the manifest');
    const saveManifest = h('button', { type: 'button', id: 'download-manifest' }, 'Download the manifest');
    const manifestText = h('pre', { id: 'run-manifest', class: 'manifest', tabindex: '0', hidden: true, 'aria-label': 'The manifest (JSON)' });
    showManifest.addEventListener('click', async () => {
      if (!manifestText.hidden) {
        manifestText.hidden = true;
        showManifest.textContent = 'Show the manifest';
        return;
      }
      try {
        const manifest = await get<unknown>(`/runs/${enc(r.id)}/manifest`, { signal });
        manifestText.textContent = JSON.stringify(manifest, null, 2);
        manifestText.hidden = false;
        showManifest.textContent = 'Hide the manifest';
      } catch (e) {
        if (!isAbort(e)) showText(manifestText, `The manifest is not available: ${errorText(e)}`);
      }
    });
    saveManifest.addEventListener('click', () => {
      void download(`/runs/${enc(r.id)}/manifest`, `${r.topic}-manifest-${r.sequence ?? r.id}.json`, signal).catch(() => {});
    });
    fill(manifestBox, h('h3', null, 'Manifest'), h('p', { class: 'hint' }, 'What the commit recorded: cursors, every file with its rows, bytes and SHA-256, the counts and the key state.'), h('div', { class: 'button-row' }, showManifest, saveManifest), manifestText);
  }

  async function previewFile(r: RunView, f: RunFile) {
    filePreview.hidden = false;
    fill(filePreview, h('h3', { id: 'file-preview-title' }, 'First rows of ', h('code', null, f.path)), h('p', { class: 'hint' }, 'Loading…'));
    try {
      const shown = await get<FilePreview>(`/runs/${enc(r.id)}/files/preview?path=${enc(f.path)}&rows=20`, { signal });
      fill(
        filePreview,
        h('h3', { id: 'file-preview-title' }, 'First rows of ', h('code', null, f.path)),
        h('p', { class: 'hint', id: 'file-preview-note' }, `${plural(shown.rows.length, 'row')} of ${num(shown.total_rows)} (${shown.format}).`),
        h(
          'div',
          { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': `First rows of ${f.path}` },
          h(
            'table',
            { class: 'data', id: 'file-preview-rows' },
            h('thead', null, h('tr', null, shown.columns.map((c) => h('th', { scope: 'col' }, c)))),
            h('tbody', null, shown.rows.map((row) => h('tr', null, row.map((v) => (v === null ? h('td', { class: 'null' }, 'NULL') : h('td', { title: v.length > 40 ? v : null }, v)))))),
          ),
        ),
      );
    } catch (e) {
      if (!isAbort(e)) fill(filePreview, h('h3', { id: 'file-preview-title' }, 'First rows of ', h('code', null, f.path)), h('p', { class: 'error-text' }, errorText(e)));
    }
  }

  return {
    element,
    render,
    current: () => current,
    onStop: (handler) => (stopHandler = handler),
  };
}
