// The mapping workbench: the SQL editor holding the mapping file (or the
// analyst's draft of it), a live preview on sample events, the schema and
// the SQL around the mapping. A topic whose files do not load opens too,
// with its text and the error marked, so that it can be fixed here.

import type { EditorView } from '@codemirror/view';
import { ApiError, errorText, get, getInfo, isAbort, post } from '../api';
import { dropDraft, loadDraft, saveDraft, setUnsaved } from '../drafts';
import { enc, fill, h, showText } from '../dom';
import { clearErrors, columnPaths, insertAtCursor, jsonEditor, setDoc, showErrors, sqlEditor, sqlViewer } from '../editor';
import type { PathEntry } from '../editor';
import { num, percent, plural, time } from '../format';
import { MAX_SAMPLE_FILE, parseSample } from '../samples';
import type { Info, MappingFile, PreviewResponse, Sample, SqlError, TopicDetail } from '../types';
import { COMPACTION_MEANING, eventsSum, figure } from '../counts';
import { copy, emptyTable, flatColumns, renderTable, schemaTree } from './workbench-parts';
import { saveMapping } from './workbench-save';

const DEBOUNCE_MS = 500;

export function workbenchPage(root: HTMLElement, topic: string, signal: AbortSignal, flash = ''): void {
  root.replaceChildren(h('h1', { tabindex: '-1' }, topic), h('p', { class: 'hint' }, 'Loading…'));
  void (async () => {
    const detail = get<TopicDetail>(`/topics/${enc(topic)}`, { signal }).then(
      (d) => ({ ok: true as const, d }),
      (e: unknown) => ({ ok: false as const, e }),
    );
    // An older server has no mapping file route: the detail's text stands in.
    const file = get<MappingFile>(`/topics/${enc(topic)}/mapping`, { signal }).catch((e: unknown) => {
      if (isAbort(e)) throw e;
      return null;
    });
    let info: Info;
    let got: Awaited<typeof detail>;
    let mapping: MappingFile | null;
    try {
      [got, mapping, info] = await Promise.all([detail, file, getInfo()]);
    } catch (e) {
      if (isAbort(e)) return;
      throw e;
    }
    if (signal.aborted) return;
    if (!got.ok && !(mapping && mapping.status === 'broken')) {
      if (isAbort(got.e)) return;
      root.replaceChildren(
        h('div', { class: 'page-head' }, h('h1', { tabindex: '-1' }, topic)),
        h('p', { class: 'error-box', role: 'alert' }, `This topic cannot be shown: ${errorText(got.e)}`),
        h('p', null, h('a', { href: '#/topics' }, 'All topics'), ' · ', h('a', { href: `#/topics/${enc(topic)}/runs` }, 'Runs')),
      );
      return;
    }
    build(root, topic, got.ok ? got.d : null, mapping, info, signal, flash);
  })();
}

function place(at: MappingFile['error_at']): string {
  if (!at) return '';
  const file = at.file.split(/[\\/]/).pop() ?? at.file;
  return [file, at.line, at.column].filter((x) => x !== null && x !== undefined).join(':');
}

function build(
  root: HTMLElement,
  topic: string,
  initial: TopicDetail | null,
  file: MappingFile | null,
  info: Info,
  signal: AbortSignal,
  flash: string,
): void {
  let detail = initial;
  // What "saved" means: the file as it is on disk, and its version.
  let saved = file?.mapping ?? detail?.mapping_sql ?? '';
  let version = file?.version ?? detail?.mapping_version ?? '';
  let paths: PathEntry[] = detail ? columnPaths(detail.events) : [];
  let canSave = info.mapping_edits;
  const broken = detail === null;
  const views: EditorView[] = [];
  signal.addEventListener('abort', () => {
    views.forEach((v) => v.destroy());
    setUnsaved(topic, false);
  });

  // ---- head
  const meta = h('dl', { class: 'meta' });
  const renderMeta = () => {
    if (!detail) {
      fill(meta);
      return;
    }
    const format = (detail.output as { format?: string }).format;
    fill(
      meta,
      h('div', null, h('dt', null, 'Event type'), h('dd', null, h('code', null, detail.event_type))),
      h('div', null, h('dt', null, 'Partitioning key'), h('dd', null, detail.partitioning_key.map((k, i) => [i ? ', ' : '', h('code', null, k)]))),
      h('div', null, h('dt', null, 'Ordering key'), h('dd', null, h('code', null, detail.ordering_key))),
      format ? h('div', null, h('dt', null, 'Format'), h('dd', null, format)) : null,
      h('div', null, h('dt', null, 'Output view'), h('dd', null, h('code', null, detail.output_view))),
    );
  };
  renderMeta();
  const topicError = h('div', { id: 'topic-error', class: broken ? 'error-box' : 'warning-box', role: 'status' });
  const renderTopicError = () => {
    const reason = file?.error ?? detail?.error ?? null;
    if (!reason) {
      fill(topicError);
      topicError.hidden = true;
      return;
    }
    const at = place(file?.error_at ?? null);
    topicError.hidden = false;
    fill(
      topicError,
      h('p', null, broken ? 'This topic does not load: ' : 'The topic’s files do not load now; the configuration shown is the last good one: ', h('strong', null, reason)),
      at ? h('p', { class: 'small' }, 'At ', h('code', null, at), '.') : null,
      h(
        'p',
        { class: 'small' },
        file?.errors.length
          ? canSave
            ? 'The error is marked in the mapping below: fix it and save, and the topic is loaded with it.'
            : 'The error is marked in the mapping below. This server does not save mappings: fix the file on the server, then reload the topics.'
          : 'The error is not in the mapping: fix the file it names on the server, then reload the topics.',
      ),
    );
  };
  renderTopicError();
  const changedOnServer = h('p', { id: 'file-changed', class: 'warning-box', role: 'status', hidden: true });
  if (file && file.served_version && file.served_version !== file.version && !file.error) {
    showText(changedOnServer, 'mapping.sql was changed on the server since it was loaded: the editor holds the file; runs use the mapping loaded before until the topics are reloaded.');
  }

  // ---- editor panel
  const editorBox = h('div', { id: 'mapping-editor', class: 'editor-box mapping' });
  const draftState = h('span', { id: 'draft-state', class: 'draft-state' });
  const draftNote = h('p', { id: 'draft-note', class: 'hint', hidden: true });
  const saveStatus = h('p', { id: 'save-status', class: 'save-status', 'aria-live': 'polite', hidden: true });
  const conflict = h('section', { id: 'save-conflict', class: 'conflict', 'aria-labelledby': 'conflict-title', hidden: true });
  const revert = h('button', { type: 'button', id: 'revert-mapping', hidden: true }, 'Revert to saved');
  const saveButton = canSave ? h('button', { type: 'button', id: 'save-mapping', class: 'primary' }, 'Save mapping') : null;
  const statusWord = h('span', { id: 'preview-status', class: 'status status-updating' }, 'updating');
  const statusNote = h('span', { class: 'status-note' }, 'Loading the preview…');
  const previewError = h('div', { id: 'preview-error', class: 'error-box', role: 'alert', hidden: true });

  // ---- side panel (tabs)
  const tabs: { button: HTMLButtonElement; panel: HTMLElement; onShow?: () => void }[] = [];
  const tablist = h('div', { role: 'tablist', class: 'tabs', 'aria-label': 'Topic details' });
  const panels = h('div', { class: 'tab-panels' });
  function addTab(id: string, label: string, panel: HTMLElement, onShow?: () => void) {
    const button = h('button', { type: 'button', role: 'tab', id, 'aria-controls': `${id}-panel`, 'aria-selected': 'false', tabindex: '-1' }, label);
    panel.id = `${id}-panel`;
    panel.setAttribute('role', 'tabpanel');
    panel.setAttribute('aria-labelledby', id);
    panel.hidden = true;
    const index = tabs.length;
    tabs.push({ button, panel, onShow });
    button.addEventListener('click', () => select(index));
    button.addEventListener('keydown', (event: KeyboardEvent) => {
      const step = event.key === 'ArrowRight' ? 1 : event.key === 'ArrowLeft' ? -1 : 0;
      if (!step) return;
      event.preventDefault();
      const next = (index + step + tabs.length) % tabs.length;
      select(next);
      tabs[next].button.focus();
    });
    tablist.append(button);
    panels.append(panel);
  }
  function select(index: number) {
    tabs.forEach((t, i) => {
      const on = i === index;
      t.button.setAttribute('aria-selected', String(on));
      t.button.tabIndex = on ? 0 : -1;
      t.panel.hidden = !on;
    });
    tabs[index].onShow?.();
  }

  // Schema tab
  const schemaBox = h('div', { class: 'schema' });
  const outputBox = h('div', { class: 'schema' });
  const warnings = h('div');
  const insert = (path: string) => insertAtCursor(mapping, path);
  const renderSchema = () => {
    if (!detail) {
      fill(schemaBox, h('p', { class: 'hint' }, 'The schema is shown once the topic loads.'));
      fill(outputBox);
      return;
    }
    const nested = detail.events.some((c) => c.children !== undefined);
    fill(schemaBox, nested ? schemaTree(detail.events, insert) : flatColumns(detail.events));
    fill(outputBox, flatColumns(detail.output_columns));
    fill(
      warnings,
      detail.schema_warnings.length
        ? [h('h3', null, 'Left out of the schema'), h('ul', { class: 'warnings' }, detail.schema_warnings.map((w) => h('li', null, w)))]
        : null,
    );
  };
  const expandAll = h('button', { type: 'button', class: 'small-button' }, 'Expand all');
  const collapseAll = h('button', { type: 'button', class: 'small-button' }, 'Collapse all');
  expandAll.addEventListener('click', () => schemaBox.querySelectorAll('details').forEach((d) => (d.open = true)));
  collapseAll.addEventListener('click', () => schemaBox.querySelectorAll('details').forEach((d) => (d.open = false)));
  addTab(
    'tab-schema',
    'Schema',
    h(
      'div',
      null,
      h('div', { class: 'panel-head' }, h('h3', null, 'events'), h('span', { class: 'muted small' }, detail?.schema_origin ?? ''), h('span', { class: 'spacer' }), h('span', { class: 'button-group' }, expandAll, collapseAll)),
      h('p', { class: 'hint' }, 'Select a column name to insert its path into the mapping.'),
      schemaBox,
      h('h3', null, 'Output columns'),
      outputBox,
      warnings,
    ),
  );

  // Sample events tab
  const most = info.preview_max_events || 1000;
  const sampleBox = h('div', { id: 'sample-editor', class: 'editor-box sample' });
  const sampleLimit = h('input', { id: 'sample-limit', type: 'number', min: 1, max: most, value: Math.min(20, most), inputmode: 'numeric', 'aria-describedby': 'sample-limit-error' });
  const limitError = h('p', { id: 'sample-limit-error', class: 'error-text small', hidden: true });
  const loadSample = h('button', { type: 'button', id: 'load-sample' }, 'Load from source');
  const upload = h('input', { id: 'sample-file', type: 'file', accept: '.json,.jsonl,.ndjson,.txt,application/json', class: 'file-input' });
  const uploadLabel = h('label', { for: 'sample-file', class: 'button-link' }, 'Open a file…');
  const sampleSource = h('p', { id: 'sample-source', class: 'hint', 'aria-live': 'polite' }, 'Loading sample events…');
  addTab(
    'tab-sample',
    'Sample events',
    h(
      'div',
      null,
      h('div', { class: 'panel-head' }, h('label', { for: 'sample-limit' }, 'Events'), sampleLimit, loadSample, upload, uploadLabel),
      limitError,
      sampleSource,
      sampleBox,
      h(
        'p',
        { class: 'hint' },
        `One event per line, as the source holds them (like fixtures/samples/*.jsonl and the CLI’s --events), or a JSON array of events; at most ${plural(most, 'event')}. Edit them or paste your own: the preview runs on them. Leave it empty to preview the first events of the source. `,
        h('a', { href: `#/topics/${enc(topic)}/events` }, 'Browse the source’s events'),
        '.',
      ),
    ),
  );

  // Generated SQL tab
  const generatedBox = h('div', { id: 'generated-sql', class: 'editor-box viewer' });
  let generatedView: EditorView | null = null;
  const copyGenerated = h('button', { type: 'button', class: 'small-button' }, 'Copy');
  // Warehouse SQL tab
  const dialect = h(
    'select',
    { id: 'warehouse-dialect' },
    h('option', { value: 'postgres' }, 'PostgreSQL'),
    h('option', { value: 'redshift' }, 'Redshift'),
    h('option', { value: 'oracle' }, 'Oracle'),
  );
  const warehouseBox = h('div', { id: 'warehouse-sql', class: 'editor-box viewer' });
  const warehouseStatus = h('p', { class: 'hint', 'aria-live': 'polite' });
  const copyWarehouse = h('button', { type: 'button', class: 'small-button' }, 'Copy');
  let warehouseView: EditorView | null = null;
  let warehouseLoaded = '';
  let warehouseAbort: AbortController | null = null;
  async function loadWarehouse(force = false) {
    const d = dialect.value;
    if (!force && warehouseLoaded === d) return;
    warehouseAbort?.abort();
    const ctl = new AbortController();
    warehouseAbort = ctl;
    signal.addEventListener('abort', () => ctl.abort(), { once: true });
    warehouseStatus.textContent = 'Loading…';
    try {
      const answer = await get<{ sql: string }>(`/topics/${enc(topic)}/warehouse-sql?dialect=${enc(d)}`, { signal: ctl.signal });
      if (!warehouseView) {
        warehouseView = sqlViewer(warehouseBox, answer.sql, 'Warehouse SQL (read-only)');
        views.push(warehouseView);
      } else setDoc(warehouseView, answer.sql);
      warehouseLoaded = d;
      warehouseStatus.textContent = `Warehouse SQL for ${dialect.selectedOptions[0]?.textContent ?? d}.`;
    } catch (e) {
      if (isAbort(e)) return;
      warehouseStatus.textContent = `Could not load the warehouse SQL: ${errorText(e)}`;
    }
  }
  if (detail) {
    addTab(
      'show-generated',
      'Generated SQL',
      h('div', null, h('div', { class: 'panel-head' }, h('p', { class: 'hint' }, 'The SQL chain a run executes, for the saved mapping.'), h('span', { class: 'spacer' }), copyGenerated), generatedBox),
      () => {
        if (!generatedView && detail) {
          generatedView = sqlViewer(generatedBox, detail.generated_sql, 'Generated SQL (read-only)');
          views.push(generatedView);
        }
      },
    );
    copyGenerated.addEventListener('click', () => copy(detail?.generated_sql ?? '', copyGenerated));
    dialect.addEventListener('change', () => void loadWarehouse());
    copyWarehouse.addEventListener('click', () => copy(warehouseView?.state.doc.toString() ?? '', copyWarehouse));
    addTab(
      'show-warehouse',
      'Warehouse SQL',
      h('div', null, h('div', { class: 'panel-head' }, h('label', { for: 'warehouse-dialect' }, 'Dialect'), dialect, h('span', { class: 'spacer' }), copyWarehouse), warehouseStatus, warehouseBox),
      () => void loadWarehouse(),
    );
  }

  // ---- preview section
  const mainTable = emptyTable('main-rows', 'MAIN rows');
  const correctionTable = emptyTable('correction-rows', 'CORRECTION rows');
  const rejectedTable = emptyTable('rejected-rows', 'Rejected events');
  const mainCount = h('span', { id: 'main-count', class: 'count' }, '–');
  const correctionCount = h('span', { id: 'correction-count', class: 'count' }, '–');
  const rejectedCount = h('span', { id: 'rejected-count', class: 'count' }, '–');
  const counts = h('dl', { class: 'counts', id: 'preview-counts' });
  const truncated = h('p', { class: 'hint', hidden: true });
  const results = h(
    'div',
    { class: 'results' },
    h('div', { class: 'result' }, h('h3', { id: 'main-title' }, 'MAIN ', mainCount), h('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-labelledby': 'main-title' }, mainTable)),
    h(
      'div',
      { class: 'result' },
      h('h3', { id: 'correction-title' }, 'CORRECTION ', correctionCount),
      h('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-labelledby': 'correction-title' }, correctionTable),
    ),
    h('div', { class: 'result' }, h('h3', { id: 'rejected-title' }, 'Rejected ', rejectedCount), h('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-labelledby': 'rejected-title' }, rejectedTable)),
  );

  // ---- layout
  root.replaceChildren(
    h(
      'div',
      { class: 'page-head' },
      h('h1', { tabindex: '-1' }, h('span', { class: 'muted' }, 'Mapping · '), topic),
      h('div', { class: 'actions' }, h('a', { href: `#/topics/${enc(topic)}/runs`, class: 'button-link' }, 'Runs'), h('a', { href: `#/topics/${enc(topic)}/events`, class: 'button-link' }, 'Source events'), h('a', { href: '#/topics' }, 'All topics')),
    ),
    meta,
    topicError,
    changedOnServer,
    h(
      'div',
      { class: 'workbench' },
      h(
        'section',
        { class: 'panel editor-panel', 'aria-labelledby': 'mapping-title' },
        h('div', { class: 'panel-head' }, h('h2', { id: 'mapping-title' }, 'Mapping SQL'), draftState, h('span', { class: 'spacer' }), revert, saveButton),
        draftNote,
        editorBox,
        saveStatus,
        conflict,
        h('div', { class: 'preview-state', 'aria-live': 'polite', 'aria-atomic': 'true' }, h('span', { class: 'muted' }, 'Preview: '), statusWord, ' ', statusNote),
        previewError,
      ),
      h('section', { class: 'panel side-panel', 'aria-label': 'Schema, sample events and SQL' }, tablist, panels),
    ),
    h(
      'section',
      { class: 'panel preview', id: 'preview', 'aria-labelledby': 'preview-title' },
      h('div', { class: 'panel-head' }, h('h2', { id: 'preview-title' }, 'Preview'), h('span', { class: 'spacer' }), counts),
      truncated,
      results,
    ),
  );
  renderSchema();
  select(broken ? 1 : 0);

  // ---- the draft: kept in this browser until saved or reverted
  const draft = loadDraft(topic);
  let sampleOwn = false;
  const mapping = sqlEditor(editorBox, {
    doc: draft && draft.mapping !== saved ? draft.mapping : saved,
    label: 'Mapping SQL',
    paths: () => paths,
    onChange: () => {
      keepDraft();
      if (saveStatus.classList.contains('ok')) saveStatus.hidden = true;
      schedule();
    },
    keys: [
      { key: 'Mod-s', preventDefault: true, run: () => (void save(), true) },
      { key: 'Mod-Enter', preventDefault: true, run: () => (previewNow(), true) },
    ],
  });
  views.push(mapping);
  let sampleLoaded = false;
  const sample = jsonEditor(sampleBox, draft?.sample ?? '', 'Sample events (one per line, or a JSON array)', () => {
    if (!sampleLoaded) return;
    // The events are the user's now, not the source's any more.
    sampleOwn = true;
    sampleSource.textContent = 'Your events: the preview runs on the text below.';
    keepDraft();
    schedule();
  });
  views.push(sample);
  if (draft?.sample) {
    sampleOwn = true;
    sampleLoaded = true;
  }

  function renderDraftState() {
    const changed = mapping.state.doc.toString() !== saved;
    draftState.textContent = changed ? 'Draft · not saved' : 'Saved';
    draftState.className = `draft-state ${changed ? 'is-draft' : 'is-saved'}`;
    revert.hidden = !changed;
    setUnsaved(topic, changed);
  }

  function keepDraft() {
    const text = mapping.state.doc.toString();
    const own = sampleOwn ? sample.state.doc.toString() : undefined;
    if (text === saved && !own) dropDraft(topic);
    // Large samples stay out of storage: the mapping is what must survive.
    else saveDraft(topic, { mapping: text, base: version, sample: own && own.length < 512 << 10 ? own : undefined });
    renderDraftState();
  }

  if (draft && draft.mapping !== saved) {
    const stale = draft.base !== version;
    fill(
      draftNote,
      `Your draft of ${time(draft.at)} is restored (kept in this browser). `,
      stale ? h('strong', null, 'The saved mapping has changed since you started it: saving shows both versions. ') : null,
    );
    draftNote.hidden = false;
  } else if (draft && !draft.sample) dropDraft(topic);
  renderDraftState();
  if (file?.errors.length) showErrors(mapping, file.errors);

  revert.addEventListener('click', () => {
    setDoc(mapping, saved);
    dropDraft(topic);
    draftNote.hidden = true;
    renderDraftState();
    mapping.focus();
  });

  // ---- preview
  let timer: ReturnType<typeof setTimeout> | undefined;
  let inflight: AbortController | null = null;
  signal.addEventListener('abort', () => {
    clearTimeout(timer);
    inflight?.abort();
  });

  function setStatus(state: 'ok' | 'updating' | 'error', note: string) {
    statusWord.textContent = state;
    statusWord.className = `status status-${state}`;
    statusNote.textContent = note;
    results.classList.toggle('stale', state !== 'ok');
  }

  function schedule() {
    inflight?.abort();
    inflight = null;
    clearTimeout(timer);
    setStatus('updating', 'Waiting for a pause in typing…');
    timer = setTimeout(() => void runPreview(), DEBOUNCE_MS);
  }

  function previewNow() {
    clearTimeout(timer);
    void runPreview();
  }

  function showPreviewError(message: string, errors: SqlError[]) {
    // Positions are listed unless the detail already names each message.
    const located = errors.filter((e) => e.line !== null && e.line !== undefined);
    const position = (e: SqlError) => `line ${e.line}${e.column !== null && e.column !== undefined ? `, column ${e.column}` : ''}`;
    if (located.length === 1 && message.includes(located[0].message)) {
      fill(previewError, h('p', null, message), h('p', { class: 'small' }, `At ${position(located[0])}.`));
    } else {
      fill(previewError, h('p', null, message), located.length ? h('ul', null, located.map((e) => h('li', null, `At ${position(e)}: ${e.message}`))) : null);
    }
    previewError.hidden = false;
  }

  function clearPreviewError() {
    previewError.replaceChildren();
    previewError.hidden = true;
  }

  async function runPreview() {
    inflight?.abort();
    const ctl = new AbortController();
    inflight = ctl;
    const text = mapping.state.doc.toString();
    const sampleText = sample.state.doc.toString();
    let body: Record<string, unknown> = { mapping: text };
    let count = 0;
    if (sampleText.trim()) {
      const parsed = parseSample(sampleText);
      if (!parsed.ok) {
        setStatus('error', 'The sample events cannot be read.');
        showPreviewError(parsed.message, []);
        return;
      }
      if (parsed.count > most) {
        setStatus('error', 'Too many sample events.');
        showPreviewError(`A preview takes at most ${plural(most, 'event')}; the sample holds ${num(parsed.count)}.`, []);
        return;
      }
      body = { ...body, ...parsed.body };
      count = parsed.count;
    } else {
      const limit = sampleLimitValue();
      if (limit === null) {
        setStatus('error', 'The number of sample events is out of range.');
        showPreviewError(`Sample events: between 1 and ${num(most)} events.`, []);
        return;
      }
      body.limit = limit;
    }
    setStatus('updating', 'Updating the preview…');
    try {
      const answer = await post<PreviewResponse>(`/topics/${enc(topic)}/preview`, body, { signal: ctl.signal });
      if (inflight !== ctl) return;
      inflight = null;
      clearErrors(mapping);
      clearPreviewError();
      renderPreview(answer);
      const n = answer.counts?.events_read ?? count;
      setStatus('ok', `${plural(n, 'event')} read${body.limit === undefined ? ' from the sample' : ' from the source'}.`);
    } catch (e) {
      if (isAbort(e) || inflight !== ctl) return;
      inflight = null;
      const errors = e instanceof ApiError ? (e.problem?.errors ?? []) : [];
      // Positions refer to the text sent, which is still the editor's text (edits abort).
      const marked = showErrors(mapping, errors);
      const title = e instanceof ApiError && e.status === 408 ? 'The preview timed out.' : marked ? 'The mapping is not valid.' : 'The preview failed.';
      setStatus('error', title);
      showPreviewError(errorText(e), errors);
    }
  }

  function renderPreview(p: PreviewResponse) {
    renderTable(mainTable, p.main);
    renderTable(correctionTable, p.correction);
    const rejected = p.rejected ?? [];
    renderTable(rejectedTable, { columns: ['event', 'reason'], rows: rejected.map((r) => ({ event: `offset ${r.index}`, reason: r.reason })) });
    const c = p.counts;
    mainCount.textContent = plural(c.main_rows, 'row');
    mainCount.dataset.count = String(c.main_rows);
    correctionCount.textContent = plural(c.correction_rows, 'row');
    correctionCount.dataset.count = String(c.correction_rows);
    rejectedCount.textContent = plural(c.events_rejected, 'event');
    rejectedCount.dataset.count = String(c.events_rejected);
    // The server's counts and rate, as a run and `materializer preview` report them.
    fill(counts, eventsSum(c, 'count', 'Every event of the sample'), figure('count-compaction', 'Compaction', percent(p.compaction_rate), COMPACTION_MEANING));
    const cut = p.main?.truncated || p.correction?.truncated;
    showText(truncated, cut ? 'Only the first rows are shown.' : '');
  }

  // ---- samples
  function sampleLimitValue(): number | null {
    const value = Number(sampleLimit.value);
    const ok = Number.isInteger(value) && value >= 1 && value <= most;
    sampleLimit.setAttribute('aria-invalid', String(!ok));
    showText(limitError, ok ? '' : `Between 1 and ${num(most)} events.`);
    return ok ? value : null;
  }
  sampleLimit.addEventListener('input', () => void sampleLimitValue());

  async function fetchSample() {
    const limit = sampleLimitValue();
    if (limit === null) return;
    loadSample.disabled = true;
    sampleSource.textContent = 'Loading sample events…';
    try {
      const answer = await get<Sample>(`/topics/${enc(topic)}/sample?limit=${limit}`, { signal });
      sampleLoaded = false;
      // One event per line, as the source holds it: an event that is not
      // JSON stays as it is, for the preview to explain.
      const lines = answer.lines ?? (answer.events ?? []).map((e) => JSON.stringify(e));
      setDoc(sample, lines.join('\n'));
      sampleLoaded = true;
      sampleOwn = false;
      keepDraft();
      sampleSource.textContent = `${plural(lines.length, 'event')} from ${answer.source || 'the source'}, one per line.`;
    } catch (e) {
      if (isAbort(e)) return;
      sampleLoaded = true;
      sampleSource.textContent = `No sample events (${errorText(e)}). The preview reads the first ${plural(limit, 'event')} of the source.`;
    } finally {
      loadSample.disabled = false;
    }
    previewNow();
  }
  loadSample.addEventListener('click', () => void fetchSample());
  upload.addEventListener('change', async () => {
    const chosen = upload.files?.[0];
    if (!chosen) return;
    if (chosen.size > MAX_SAMPLE_FILE) {
      sampleSource.textContent = `${chosen.name} is too large for a sample (${num(chosen.size)} bytes; at most ${num(MAX_SAMPLE_FILE)}).`;
      return;
    }
    const text = await chosen.text();
    sampleLoaded = true;
    setDoc(sample, text.replace(/\s+$/, ''));
    sampleSource.textContent = `Events of ${chosen.name}: the preview runs on them.`;
    upload.value = '';
  });

  // ---- save
  const save = () =>
    saveMapping({
      topic,
      signal,
      canSave: () => canSave,
      text: () => mapping.state.doc.toString(),
      base: () => version,
      status: saveStatus,
      conflict,
      button: saveButton,
      saved: (updated, text) => {
        saved = updated.mapping_sql ?? text;
        version = updated.mapping_version ?? version;
        dropDraft(topic);
        draftNote.hidden = true;
        if (broken || file?.error) {
          // The topic loads now: show it as it is served.
          setUnsaved(topic, false);
          views.forEach((v) => v.destroy());
          views.length = 0;
          workbenchPage(root, topic, signal, 'Saved. The topic loads with this mapping now.');
          return;
        }
        detail = updated;
        paths = columnPaths(updated.events);
        keepDraft();
        if (generatedView) setDoc(generatedView, updated.generated_sql);
        warehouseLoaded = '';
        if (tabs[3] && !tabs[3].panel.hidden) void loadWarehouse(true);
        renderMeta();
        renderSchema();
        clearErrors(mapping);
        changedOnServer.hidden = true;
        showText(saveStatus, 'Saved. The server reloaded the topic with this mapping.');
        saveStatus.className = 'save-status ok';
      },
      takeTheirs: (text, v) => {
        saved = text;
        version = v;
        setDoc(mapping, text);
        keepDraft();
      },
      rebase: (text, v) => {
        saved = text;
        version = v;
        keepDraft();
      },
      invalid: (errors, sent) => {
        if (mapping.state.doc.toString() === sent) showErrors(mapping, errors);
      },
      refused: () => {
        canSave = false;
        saveButton?.remove();
      },
    });
  saveButton?.addEventListener('click', () => void save());
  if (flash) {
    showText(saveStatus, flash);
    saveStatus.className = 'save-status ok';
  }

  if (draft?.sample) previewNow();
  else void fetchSample();
}
