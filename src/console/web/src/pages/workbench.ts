import type { EditorView } from '@codemirror/view';
import { ApiError, errorText, get, getInfo, isAbort, post, put } from '../api';
import { enc, fill, h, showText } from '../dom';
import {
  clearErrors,
  columnPaths,
  insertAtCursor,
  isListType,
  jsonEditor,
  setDoc,
  showErrors,
  sqlEditor,
  sqlViewer,
} from '../editor';
import type { PathEntry } from '../editor';
import { compactionRate, num, percent, plural } from '../format';
import type { Column, Info, PreviewResponse, PreviewTable, Sample, SqlError, TopicDetail } from '../types';

const DEBOUNCE_MS = 500;

// ---------------------------------------------------------------- schema tree

function shortType(c: Column): string {
  if (c.children && c.children.length) {
    if (isListType(c.type)) return 'LIST';
    const m = /^\s*([A-Za-z_ ]+?)\s*[<(]/.exec(c.type);
    if (m) return m[1].toUpperCase();
  }
  return c.type;
}

function nullability(c: Column): HTMLElement {
  return h('span', { class: c.nullable ? 'nullable' : 'not-null' }, c.nullable ? 'null' : 'not null');
}

function schemaTree(columns: Column[], insert: (path: string) => void, prefix = '', inList = false): HTMLElement {
  return h(
    'ul',
    { class: 'tree' },
    columns.map((c) => {
      const path = prefix ? `${prefix}.${c.name}` : c.name;
      const name = h(
        'button',
        {
          type: 'button',
          class: 'col-name',
          title: inList ? `Insert ${path} (a field of each list element: unnest the list first)` : `Insert ${path} into the mapping`,
          'aria-label': `Insert ${path}`,
        },
        c.name,
      );
      name.addEventListener('click', (event) => {
        event.preventDefault();
        insert(path);
      });
      const type = h('span', { class: 'col-type', title: c.type }, shortType(c));
      if (c.children && c.children.length) {
        const list = isListType(c.type);
        return h(
          'li',
          null,
          h(
            'details',
            null,
            h('summary', null, h('span', { class: 'col-label' }, c.name, list ? h('span', { class: 'muted' }, '[]') : null), ' ', type, ' ', nullability(c)),
            h('div', { class: 'tree-actions' }, name),
            // Fields of list elements are named relative to the element.
            schemaTree(c.children, insert, list ? '' : path, inList || list),
          ),
        );
      }
      return h('li', { class: 'leaf' }, name, ' ', type, ' ', nullability(c));
    }),
  );
}

function flatColumns(columns: Column[]): HTMLElement {
  return h(
    'table',
    { class: 'columns' },
    h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'Column'), h('th', { scope: 'col' }, 'Type'), h('th', { scope: 'col' }, 'Null'))),
    h(
      'tbody',
      null,
      columns.map((c) => h('tr', null, h('td', null, h('code', null, c.name)), h('td', null, h('code', { class: 'col-type' }, c.type)), h('td', null, nullability(c)))),
    ),
  );
}

// ---------------------------------------------------------------- preview tables

function cellValue(value: unknown): HTMLElement {
  if (value === null || value === undefined) return h('td', { class: 'null' }, 'NULL');
  const text = typeof value === 'object' ? JSON.stringify(value) : String(value);
  return h('td', { title: text.length > 40 ? text : null, class: typeof value === 'number' ? 'num' : null }, text);
}

function renderTable(table: HTMLTableElement, t: PreviewTable | undefined): void {
  const columns = t?.columns ?? [];
  const rows = t?.rows ?? [];
  fill(
    table,
    h('thead', null, h('tr', null, columns.map((c) => h('th', { scope: 'col' }, c)))),
    h(
      'tbody',
      null,
      rows.map((row) => h('tr', null, columns.map((c) => cellValue((row as Record<string, unknown>)[c])))),
    ),
  );
}

function emptyTable(id: string, caption: string): HTMLTableElement {
  return h('table', { id, class: 'data' }, h('caption', { class: 'sr-only' }, caption), h('thead'), h('tbody'));
}

// ---------------------------------------------------------------- page

export function workbenchPage(root: HTMLElement, topic: string, signal: AbortSignal): void {
  root.replaceChildren(h('h1', { tabindex: '-1' }, topic), h('p', { class: 'hint' }, 'Loading…'));
  void (async () => {
    let detail: TopicDetail;
    let info: Info;
    try {
      [detail, info] = await Promise.all([get<TopicDetail>(`/topics/${enc(topic)}`, { signal }), getInfo()]);
    } catch (e) {
      if (isAbort(e)) return;
      root.replaceChildren(
        h('div', { class: 'page-head' }, h('h1', { tabindex: '-1' }, topic)),
        h('p', { class: 'error-box', role: 'alert' }, `This topic cannot be shown: ${errorText(e)}`),
        h('p', null, h('a', { href: '#/topics' }, 'All topics'), ' · ', h('a', { href: `#/topics/${enc(topic)}/runs` }, 'Runs')),
      );
      return;
    }
    if (signal.aborted) return;
    build(root, topic, detail, info, signal);
  })();
}

function build(root: HTMLElement, topic: string, initial: TopicDetail, info: Info, signal: AbortSignal): void {
  let detail = initial;
  let saved = detail.mapping_sql;
  let paths: PathEntry[] = columnPaths(detail.events);
  let canSave = info.mapping_edits;
  const views: EditorView[] = [];
  signal.addEventListener('abort', () => views.forEach((v) => v.destroy()));

  // ---- head
  const meta = h('dl', { class: 'meta' });
  const renderMeta = () => {
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
  const staleBanner = h('p', { class: 'warning-box', role: 'status' });
  const renderStale = () =>
    showText(staleBanner, detail.error ? `The topic's files do not load now; the configuration shown is the last good one. ${detail.error}` : '');
  renderStale();

  // ---- editor panel
  const editorBox = h('div', { id: 'mapping-editor', class: 'editor-box mapping' });
  const dirty = h('span', { class: 'dirty', hidden: true }, 'unsaved changes');
  const saveStatus = h('p', { id: 'save-status', class: 'save-status', 'aria-live': 'polite', hidden: true });
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
      h('div', { class: 'panel-head' }, h('h3', null, 'events'), h('span', { class: 'muted small' }, detail.schema_origin), h('span', { class: 'spacer' }), h('span', { class: 'button-group' }, expandAll, collapseAll)),
      h('p', { class: 'hint' }, 'Select a column name to insert its path into the mapping.'),
      schemaBox,
      h('h3', null, 'Output columns'),
      outputBox,
      warnings,
    ),
  );

  // Sample events tab
  const sampleBox = h('div', { id: 'sample-editor', class: 'editor-box sample' });
  const sampleLimit = h('input', {
    id: 'sample-limit',
    type: 'number',
    min: 1,
    max: info.preview_max_events || 1000,
    value: Math.min(20, info.preview_max_events || 20),
    inputmode: 'numeric',
  });
  const loadSample = h('button', { type: 'button', id: 'load-sample' }, 'Load sample');
  const sampleSource = h('p', { id: 'sample-source', class: 'hint', 'aria-live': 'polite' }, 'Loading sample events…');
  addTab(
    'tab-sample',
    'Sample events',
    h(
      'div',
      null,
      h('div', { class: 'panel-head' }, h('label', { for: 'sample-limit' }, 'Events'), sampleLimit, loadSample),
      sampleSource,
      sampleBox,
      h(
        'p',
        { class: 'hint' },
        'A JSON array of events: edit them or paste your own; the preview runs on them. Leave it empty to preview the first events of the source.',
        info.preview_max_events ? ` At most ${plural(info.preview_max_events, 'event')}.` : '',
      ),
    ),
  );

  // Generated SQL tab
  const generatedBox = h('div', { id: 'generated-sql', class: 'editor-box viewer' });
  let generatedView: EditorView | null = null;
  const copyGenerated = h('button', { type: 'button', class: 'small-button' }, 'Copy');
  addTab(
    'show-generated',
    'Generated SQL',
    h('div', null, h('div', { class: 'panel-head' }, h('p', { class: 'hint' }, 'The SQL chain a run executes, for the saved mapping.'), h('span', { class: 'spacer' }), copyGenerated), generatedBox),
    () => {
      if (!generatedView) {
        generatedView = sqlViewer(generatedBox, detail.generated_sql, 'Generated SQL (read-only)');
        views.push(generatedView);
      }
    },
  );
  copyGenerated.addEventListener('click', () => copy(detail.generated_sql, copyGenerated));

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
  dialect.addEventListener('change', () => void loadWarehouse());
  copyWarehouse.addEventListener('click', () => copy(warehouseView?.state.doc.toString() ?? '', copyWarehouse));
  addTab(
    'show-warehouse',
    'Warehouse SQL',
    h(
      'div',
      null,
      h('div', { class: 'panel-head' }, h('label', { for: 'warehouse-dialect' }, 'Dialect'), dialect, h('span', { class: 'spacer' }), copyWarehouse),
      warehouseStatus,
      warehouseBox,
    ),
    () => void loadWarehouse(),
  );

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
    h('section', { class: 'result', 'aria-labelledby': 'main-title' }, h('h3', { id: 'main-title' }, 'MAIN ', mainCount), h('div', { class: 'table-wrap' }, mainTable)),
    h(
      'section',
      { class: 'result', 'aria-labelledby': 'correction-title' },
      h('h3', { id: 'correction-title' }, 'CORRECTION ', correctionCount),
      h('div', { class: 'table-wrap' }, correctionTable),
    ),
    h('section', { class: 'result', 'aria-labelledby': 'rejected-title' }, h('h3', { id: 'rejected-title' }, 'Rejected ', rejectedCount), h('div', { class: 'table-wrap' }, rejectedTable)),
  );

  // ---- layout
  root.replaceChildren(
    h(
      'div',
      { class: 'page-head' },
      h('h1', { tabindex: '-1' }, h('span', { class: 'muted' }, 'Mapping · '), topic),
      h('div', { class: 'actions' }, h('a', { href: `#/topics/${enc(topic)}/runs`, class: 'button-link' }, 'Runs'), h('a', { href: '#/topics' }, 'All topics')),
    ),
    meta,
    staleBanner,
    h(
      'div',
      { class: 'workbench' },
      h(
        'section',
        { class: 'panel editor-panel', 'aria-labelledby': 'mapping-title' },
        h('div', { class: 'panel-head' }, h('h2', { id: 'mapping-title' }, 'Mapping SQL'), dirty, h('span', { class: 'spacer' }), revert, saveButton),
        editorBox,
        saveStatus,
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
  select(0);

  // ---- editors
  const mapping = sqlEditor(editorBox, {
    doc: saved,
    label: 'Mapping SQL',
    paths: () => paths,
    onChange: () => {
      const changed = mapping.state.doc.toString() !== saved;
      dirty.hidden = !changed;
      revert.hidden = !changed;
      if (saveStatus.classList.contains('ok')) saveStatus.hidden = true;
      schedule();
    },
    keys: [
      { key: 'Mod-s', preventDefault: true, run: () => (save(), true) },
      { key: 'Mod-Enter', preventDefault: true, run: () => (previewNow(), true) },
    ],
  });
  views.push(mapping);
  let sampleLoaded = false;
  const sample = jsonEditor(sampleBox, '', 'Sample events (JSON array)', () => {
    if (!sampleLoaded) return;
    // The events are the user's now, not the source's any more.
    sampleSource.textContent = 'Your events: the preview runs on the JSON below.';
    schedule();
  });
  views.push(sample);
  revert.addEventListener('click', () => {
    setDoc(mapping, saved);
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
      previewError.hidden = false;
      return;
    }
    fill(
      previewError,
      h('p', null, message),
      located.length
        ? h(
            'ul',
            null,
            located.map((e) => h('li', null, `At ${position(e)}: ${e.message}`)),
          )
        : null,
    );
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
    const body: { mapping: string; events?: unknown[]; limit?: number } = { mapping: text };
    const sampleText = sample.state.doc.toString().trim();
    if (sampleText) {
      let events: unknown;
      try {
        events = JSON.parse(sampleText);
      } catch (e) {
        setStatus('error', 'The sample events are not valid JSON.');
        showPreviewError(`Sample events: ${errorText(e)}`, []);
        return;
      }
      if (!Array.isArray(events)) {
        setStatus('error', 'The sample events must be a JSON array.');
        showPreviewError('Sample events: expected a JSON array of event objects, like [{"metadata": {...}, ...}].', []);
        return;
      }
      body.events = events;
    } else {
      body.limit = Number(sampleLimit.value) || 20;
    }
    setStatus('updating', 'Updating the preview…');
    try {
      const answer = await post<PreviewResponse>(`/topics/${enc(topic)}/preview`, body, { signal: ctl.signal });
      if (inflight !== ctl) return;
      inflight = null;
      clearErrors(mapping);
      clearPreviewError();
      renderPreview(answer);
      const n = answer.counts?.events_read ?? 0;
      setStatus('ok', `${plural(n, 'event')} read${body.events ? ' from the sample' : ' from the source'}.`);
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
    renderTable(rejectedTable, {
      columns: ['event', 'reason'],
      rows: rejected.map((r) => ({ event: `#${r.index + 1}`, reason: r.reason })),
    });
    const c = p.counts;
    const mainRows = p.main?.rows?.length ?? 0;
    const correctionRows = p.correction?.rows?.length ?? 0;
    mainCount.textContent = plural(c?.main_rows ?? mainRows, 'row');
    mainCount.dataset.count = String(c?.main_rows ?? mainRows);
    correctionCount.textContent = plural(c?.correction_rows ?? correctionRows, 'row');
    correctionCount.dataset.count = String(c?.correction_rows ?? correctionRows);
    rejectedCount.textContent = plural(c?.events_rejected ?? rejected.length, 'event');
    rejectedCount.dataset.count = String(c?.events_rejected ?? rejected.length);
    if (c) {
      const item = (label: string, value: string, title?: string) => h('div', { title: title ?? null }, h('dt', null, label), h('dd', null, value));
      fill(
        counts,
        item('Events read', num(c.events_read)),
        item('Rejected', num(c.events_rejected)),
        item('Into MAIN', num(c.main_input), 'Events that are the newest version of their key'),
        item('Superseded', num(c.superseded), 'Events replaced by a newer version of the same key'),
        item('Corrections', num(c.correction_events), 'Events older than a version already committed'),
        item('Compaction', percent(compactionRate(c)), 'Share of decoded events that did not reach MAIN'),
      );
    }
    showText(truncated, p.truncated ? 'Only the first rows are shown.' : '');
  }

  // ---- samples
  async function fetchSample() {
    loadSample.disabled = true;
    sampleSource.textContent = 'Loading sample events…';
    const limit = Number(sampleLimit.value) || 20;
    try {
      const answer = await get<Sample>(`/topics/${enc(topic)}/sample?limit=${limit}`, { signal });
      sampleLoaded = false;
      setDoc(sample, JSON.stringify(answer.events ?? [], null, 2));
      sampleLoaded = true;
      sampleSource.textContent = `${plural(answer.events?.length ?? 0, 'event')} from ${answer.source || 'the source'}.`;
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

  // ---- save
  async function save() {
    if (!canSave || !saveButton) return;
    const text = mapping.state.doc.toString();
    saveButton.disabled = true;
    showText(saveStatus, 'Saving…');
    saveStatus.className = 'save-status';
    try {
      const updated = await put<TopicDetail>(`/topics/${enc(topic)}/mapping`, { mapping: text }, { signal, own: [403] });
      detail = updated;
      saved = updated.mapping_sql ?? text;
      paths = columnPaths(detail.events);
      const current = mapping.state.doc.toString();
      dirty.hidden = revert.hidden = current === saved;
      if (generatedView) setDoc(generatedView, detail.generated_sql);
      warehouseLoaded = '';
      if (!tabs[3].panel.hidden) void loadWarehouse(true);
      renderMeta();
      renderStale();
      renderSchema();
      clearErrors(mapping);
      showText(saveStatus, 'Saved. The server reloaded the topic with this mapping.');
      saveStatus.className = 'save-status ok';
    } catch (e) {
      if (isAbort(e)) return;
      if (e instanceof ApiError && e.status === 403) {
        canSave = false;
        saveButton.remove();
        showText(saveStatus, `Not saved: this server does not allow editing mappings (${e.message}).`);
      } else {
        const errors = e instanceof ApiError ? (e.problem?.errors ?? []) : [];
        if (mapping.state.doc.toString() === text) showErrors(mapping, errors);
        const where = errors
          .filter((x) => x.line !== null && x.line !== undefined)
          .map((x) => ` (line ${x.line}${x.column ? `, column ${x.column}` : ''})`)
          .join('');
        showText(saveStatus, `Not saved: ${errorText(e)}${where}`);
      }
      saveStatus.className = 'save-status error';
    } finally {
      if (saveButton) saveButton.disabled = false;
    }
  }
  saveButton?.addEventListener('click', () => void save());

  void fetchSample();
}

function copy(text: string, button: HTMLButtonElement): void {
  const done = (label: string) => {
    button.textContent = label;
    setTimeout(() => (button.textContent = 'Copy'), 1500);
  };
  if (!navigator.clipboard) return done('Copy not available');
  navigator.clipboard.writeText(text).then(
    () => done('Copied'),
    () => done('Copy failed'),
  );
}
