// Parts of the mapping workbench: the schema tree, the preview tables and
// copying to the clipboard.

import { fill, h } from '../dom';
import { isListType } from '../editor';
import type { Column, PreviewTable } from '../types';

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

export function schemaTree(columns: Column[], insert: (path: string) => void, prefix = '', inList = false): HTMLElement {
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

export function flatColumns(columns: Column[]): HTMLElement {
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

export function renderTable(table: HTMLTableElement, t: PreviewTable | undefined): void {
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

export function emptyTable(id: string, caption: string): HTMLTableElement {
  return h('table', { id, class: 'data' }, h('caption', { class: 'sr-only' }, caption), h('thead'), h('tbody'));
}

export function copy(text: string, button: HTMLButtonElement): void {
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
