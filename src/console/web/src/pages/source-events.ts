// #/topics/{t}/events: the events of a topic's source as it holds them, one
// partition from an offset on (or all partitions), with a text filter.
// Nothing is committed: it reads as a preview reads its sample.

import { errorText, get, isAbort } from '../api';
import { enc, fill, h, showText } from '../dom';
import { plural } from '../format';
import type { SourceEvents } from '../types';

export function sourceEventsPage(root: HTMLElement, topic: string, signal: AbortSignal): void {
  const partition = h('select', { id: 'events-partition' }, h('option', { value: '' }, 'All partitions'));
  const from = h('input', { id: 'events-from', type: 'text', placeholder: 'the oldest', spellcheck: 'false', autocomplete: 'off' });
  const filter = h('input', { id: 'events-filter', type: 'search', placeholder: 'text in the event', autocomplete: 'off' });
  const limit = h('input', { id: 'events-limit', type: 'number', min: 1, max: 500, value: 50, inputmode: 'numeric' });
  const show = h('button', { type: 'submit', id: 'events-show', class: 'primary' }, 'Show');
  const status = h('p', { id: 'events-status', class: 'hint', 'aria-live': 'polite' }, 'Loading events…');
  const body = h('tbody');
  const table = h(
    'table',
    { class: 'data events', id: 'source-events' },
    h('caption', { class: 'sr-only' }, 'Events of the source'),
    h('thead', null, h('tr', null, ['Partition', 'Offset', 'Event'].map((c) => h('th', { scope: 'col' }, c)))),
    body,
  );
  const form = h(
    'form',
    { class: 'filters', id: 'events-form' },
    h('label', null, 'Partition ', partition),
    h('label', null, 'From offset ', from),
    h('label', null, 'Containing ', filter),
    h('label', null, 'Events ', limit),
    show,
  );
  root.replaceChildren(
    h(
      'div',
      { class: 'page-head' },
      h('h1', { tabindex: '-1' }, h('span', { class: 'muted' }, 'Source events · '), topic),
      h('div', { class: 'actions' }, h('a', { href: `#/topics/${enc(topic)}`, class: 'button-link' }, 'Mapping'), h('a', { href: `#/topics/${enc(topic)}/runs`, class: 'button-link' }, 'Runs'), h('a', { href: '#/topics' }, 'All topics')),
    ),
    h('p', { class: 'hint' }, 'The events as the source holds them, nothing committed. An offset needs its partition; copy a line into the workbench’s sample events to try the mapping on it.'),
    form,
    status,
    h('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': 'Events of the source' }, table),
  );

  let partitionsShown = false;
  let inflight: AbortController | null = null;
  async function load() {
    inflight?.abort();
    const ctl = new AbortController();
    inflight = ctl;
    signal.addEventListener('abort', () => ctl.abort(), { once: true });
    const query = new URLSearchParams();
    if (partition.value) query.set('partition', partition.value);
    if (from.value.trim()) query.set('from', from.value.trim());
    if (filter.value) query.set('filter', filter.value);
    query.set('limit', limit.value || '50');
    status.textContent = 'Loading events…';
    try {
      const answer = await get<SourceEvents>(`/topics/${enc(topic)}/source-events?${query}`, { signal: ctl.signal });
      if (inflight !== ctl) return;
      if (!partitionsShown) {
        partitionsShown = true;
        partition.append(...answer.partitions.map((p) => h('option', { value: p }, p)));
      }
      fill(
        body,
        answer.events.map((e) =>
          h('tr', { 'data-testid': 'source-event', 'data-partition': e.partition, 'data-offset': e.offset }, h('td', null, e.partition), h('td', null, h('code', null, e.offset)), h('td', { class: 'event' }, h('code', null, e.event))),
        ),
      );
      const more = answer.more ? ' There are more: give the last offset shown as the next start.' : '';
      showText(status, `${plural(answer.events.length, 'event')} of ${answer.source}, ${plural(answer.scanned, 'event')} looked at.${more}`);
    } catch (e) {
      if (isAbort(e)) return;
      fill(body);
      showText(status, `No events: ${errorText(e)}`);
    }
  }
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    void load();
  });
  void load();
}
