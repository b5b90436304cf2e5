// CodeMirror 6 set-ups: the mapping SQL editor, the sample events JSON editor
// and read-only SQL viewers.

import { autocompletion, closeBrackets, closeBracketsKeymap, completionKeymap } from '@codemirror/autocomplete';
import type { Completion, CompletionContext, CompletionResult } from '@codemirror/autocomplete';
import { defaultKeymap, history, historyKeymap, insertNewlineKeepIndent } from '@codemirror/commands';
import { json, jsonParseLinter } from '@codemirror/lang-json';
import { PostgreSQL, sql } from '@codemirror/lang-sql';
import { bracketMatching, defaultHighlightStyle, indentOnInput, syntaxHighlighting } from '@codemirror/language';
import { lintGutter, linter, lintKeymap, setDiagnostics } from '@codemirror/lint';
import type { Diagnostic } from '@codemirror/lint';
import { EditorState } from '@codemirror/state';
import type { Extension, Text } from '@codemirror/state';
import {
  drawSelection,
  EditorView,
  highlightActiveLine,
  highlightActiveLineGutter,
  highlightSpecialChars,
  keymap,
  lineNumbers,
} from '@codemirror/view';
import type { KeyBinding } from '@codemirror/view';
import type { Column, SqlError } from './types';

const theme = EditorView.theme({
  '&': { height: '100%', fontSize: '13px', backgroundColor: '#fff' },
  '.cm-scroller': {
    fontFamily: 'ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace',
    lineHeight: '1.5',
    overflow: 'auto',
  },
  '&.cm-focused': { outline: '2px solid #1d4ed8', outlineOffset: '-2px' },
  '.cm-gutters': { backgroundColor: '#f6f7f9', color: '#5c6370', borderRight: '1px solid #e5e7eb' },
  '.cm-activeLine': { backgroundColor: '#f3f6fc' },
  '.cm-activeLineGutter': { backgroundColor: '#e8eefb' },
  '.cm-tooltip': { fontSize: '13px' },
});

function base(label: string): Extension[] {
  return [
    lineNumbers(),
    highlightActiveLineGutter(),
    highlightSpecialChars(),
    history(),
    drawSelection(),
    indentOnInput(),
    syntaxHighlighting(defaultHighlightStyle, { fallback: true }),
    bracketMatching(),
    closeBrackets(),
    highlightActiveLine(),
    theme,
    EditorView.lineWrapping,
    // In the tab order as a field is, so that a long text scrolls from the keyboard.
    EditorView.contentAttributes.of({ 'aria-label': label, tabindex: '0' }),
  ];
}

const keys = (extra: KeyBinding[]) =>
  keymap.of([...extra, ...closeBracketsKeymap, ...defaultKeymap, ...historyKeymap, ...completionKeymap, ...lintKeymap]);

// ---------------------------------------------------------------- completion

export interface PathEntry {
  path: string;
  type: string;
  nullable: boolean;
  depth: number;
}

export function isListType(type: string): boolean {
  return /^\s*(LIST|LARGE\s*LIST|ARRAY|LargeList|List|FixedSizeList)\b/i.test(type) || /\[\]\s*$/.test(type);
}

/**
 * Column paths usable in SQL: top-level columns and struct fields as
 * `parent.child`. Fields inside lists need an unnest first and are left out.
 */
export function columnPaths(columns: Column[], prefix = '', depth = 0): PathEntry[] {
  const out: PathEntry[] = [];
  for (const c of columns) {
    const path = prefix ? `${prefix}.${c.name}` : c.name;
    out.push({ path, type: c.type, nullable: c.nullable, depth });
    if (c.children && c.children.length > 0 && !isListType(c.type)) {
      out.push(...columnPaths(c.children, path, depth + 1));
    }
  }
  return out;
}

const extraWords: Completion[] = [
  { label: 'events', type: 'class', detail: 'the events table', boost: 2 },
  { label: '_partition', type: 'variable', detail: 'system column: Nakadi partition' },
  { label: '_offset', type: 'variable', detail: 'system column: offset of the event' },
  { label: '_seq', type: 'variable', detail: 'system column: arrival number in the partition' },
  { label: 'unnest', type: 'function', detail: 'one row per element; none for [] or null' },
  { label: 'unnest_outer', type: 'function', detail: 'one row per element; one NULL row for [] or null' },
  { label: 'coalesce', type: 'function' },
  { label: 'nullif', type: 'function' },
  { label: 'date_trunc', type: 'function' },
];

function columnSource(getPaths: () => PathEntry[]) {
  return (context: CompletionContext): CompletionResult | null => {
    const word = context.matchBefore(/[A-Za-z_][\w]*(?:\.[\w]*)*/);
    if (!word && !context.explicit) return null;
    const from = word ? word.from : context.pos;
    if (word && word.from === word.to && !context.explicit) return null;
    const options: Completion[] = getPaths().map((p) => ({
      label: p.path,
      type: p.depth === 0 ? 'variable' : 'property',
      detail: `${p.type}${p.nullable ? '' : ' NOT NULL'}`,
      boost: 1 - p.depth * 0.1,
    }));
    return { from, options: [...options, ...extraWords], validFor: /^[\w.]*$/ };
  };
}

// ---------------------------------------------------------------- SQL editor

export interface SqlEditorOptions {
  doc: string;
  label: string;
  paths: () => PathEntry[];
  onChange: () => void;
  keys?: KeyBinding[];
}

export function sqlEditor(parent: HTMLElement, options: SqlEditorOptions): EditorView {
  const lang = sql({ dialect: PostgreSQL, upperCaseKeywords: true });
  return new EditorView({
    parent,
    state: EditorState.create({
      doc: options.doc,
      extensions: [
        base(options.label),
        // Enter keeps the line's indentation: the SQL language's own rule
        // indents a continued statement by six spaces. (The completion list
        // takes Enter first while it is open.)
        keys([...(options.keys ?? []), { key: 'Enter', run: insertNewlineKeepIndent }]),
        lang,
        PostgreSQL.language.data.of({ autocomplete: columnSource(options.paths) }),
        autocompletion({ activateOnTyping: true, icons: false }),
        lintGutter(),
        EditorView.updateListener.of((u) => {
          if (u.docChanged) options.onChange();
        }),
      ],
    }),
  });
}

/** A read-only SQL view (selectable, copyable). */
export function sqlViewer(parent: HTMLElement, doc: string, label: string): EditorView {
  return new EditorView({
    parent,
    state: EditorState.create({
      doc,
      extensions: [base(label), keys([]), sql({ dialect: PostgreSQL }), EditorState.readOnly.of(true)],
    }),
  });
}

export function setDoc(view: EditorView, doc: string): void {
  view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: doc } });
}

// ---------------------------------------------------------------- JSON editor

/**
 * The sample events editor: a JSON array, or one event per line (the form of
 * recordings, `fixtures/samples/*.jsonl` and the CLI's `--events`). Only an
 * array is linted as JSON: a line that is not JSON is an event the preview
 * rejects with the reason a run gives.
 */
export function jsonEditor(parent: HTMLElement, doc: string, label: string, onChange: () => void): EditorView {
  const arrayLinter = jsonParseLinter();
  return new EditorView({
    parent,
    state: EditorState.create({
      doc,
      extensions: [
        base(label),
        keys([]),
        json(),
        linter((view) => (view.state.doc.toString().trimStart().startsWith('[') ? arrayLinter(view) : []), { delay: 300 }),
        lintGutter(),
        EditorView.updateListener.of((u) => {
          if (u.docChanged) onChange();
        }),
      ],
    }),
  });
}

// ---------------------------------------------------------------- diagnostics

/** The range an error at a 1-based line and column marks: the word there. */
export function errorRange(doc: Text, line: number, column: number | null): { from: number; to: number } {
  const l = doc.line(Math.min(Math.max(1, line), doc.lines));
  if (column === null || column === undefined) return { from: l.from, to: l.to };
  const start = Math.min(Math.max(0, column - 1), l.length);
  let end = start;
  while (end < l.length && /[A-Za-z0-9_$.]/.test(l.text[end])) end++;
  if (end === start && start < l.length) end = start + 1;
  if (end === start && start > 0) return { from: l.from + start - 1, to: l.from + start };
  return { from: l.from + start, to: l.from + end };
}

/** Marks SQL errors (positions in the current text); errors without a line are not marked. */
export function showErrors(view: EditorView, errors: SqlError[]): number {
  const diagnostics: Diagnostic[] = [];
  for (const e of errors) {
    if (e.line === null || e.line === undefined) continue;
    const { from, to } = errorRange(view.state.doc, e.line, e.column);
    diagnostics.push({ from, to, severity: 'error', message: e.message, source: 'materializer' });
  }
  view.dispatch(setDiagnostics(view.state, diagnostics));
  return diagnostics.length;
}

export function clearErrors(view: EditorView): void {
  view.dispatch(setDiagnostics(view.state, []));
}

/** Inserts text at the selection and focuses the editor. */
export function insertAtCursor(view: EditorView, text: string): void {
  const { from, to } = view.state.selection.main;
  view.dispatch({ changes: { from, to, insert: text }, selection: { anchor: from + text.length } });
  view.focus();
}
