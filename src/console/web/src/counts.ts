// Where the events went, defined once for the workbench's preview and a
// run's page, as the CLI and the API count them:
// read = into MAIN + superseded + corrections + rejected.

import { h } from './dom';
import { num } from './format';
import type { Counts } from './types';

/** One figure of a `<dl>`: its label, its value, what it means. */
export function figure(id: string, label: string, value: string, meaning?: string, op?: string): HTMLElement {
  return h(
    'div',
    { title: meaning ?? null },
    h('dt', null, op ? h('span', { class: 'op', 'aria-hidden': 'true' }, `${op} `) : null, label),
    h('dd', { id }, value),
  );
}

/** The sum of the events read, each figure with `prefix` before its id. */
export function eventsSum(c: Counts, prefix: string, read: string): HTMLElement[] {
  return [
    figure(`${prefix}-read`, 'Events read', num(c.events_read), read),
    figure(`${prefix}-main-input`, 'Into MAIN', num(c.main_input), 'Events that are the newest version of their key', '='),
    figure(`${prefix}-superseded`, 'Superseded', num(c.superseded), 'Versions a newer version of the same key replaced', '+'),
    figure(`${prefix}-corrections`, 'Corrections', num(c.correction_events), 'Events that arrived after a newer version of their key', '+'),
    figure(`${prefix}-rejected`, 'Rejected', num(c.events_rejected), 'Events that do not decode', '+'),
  ];
}

/** What the compaction rate is, as a run, the preview and the CLI report it. */
export const COMPACTION_MEANING = 'Superseded ÷ decoded events (read − rejected): corrections are decoded, not superseded';
