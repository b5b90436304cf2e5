// Saving a mapping from the workbench: with the version of the text it
// replaces, so that a change made to the file on the server since is never
// overwritten unseen; a conflict shows both versions and lets the analyst
// choose.

import { ApiError, errorText, put } from '../api';
import { diffLines } from '../diff';
import { enc, fill, h, showText } from '../dom';
import type { SqlError, TopicDetail } from '../types';

export interface SaveContext {
  topic: string;
  signal: AbortSignal;
  /** Whether this server saves mappings (`serve --allow-mapping-edits`). */
  canSave: () => boolean;
  /** The editor's text. */
  text: () => string;
  /** The version of the saved text the editor's text replaces. */
  base: () => string;
  status: HTMLElement;
  conflict: HTMLElement;
  button: HTMLButtonElement | null;
  saved: (detail: TopicDetail, text: string) => void;
  /** The server's version replaces the editor's text. */
  takeTheirs: (mapping: string, version: string) => void;
  /** The editor keeps its text; the server's version becomes the one it replaces. */
  rebase: (mapping: string, version: string) => void;
  invalid: (errors: SqlError[], sent: string) => void;
  refused: () => void;
}

function say(ctx: SaveContext, text: string, kind: '' | 'ok' | 'error') {
  showText(ctx.status, text);
  ctx.status.className = `save-status ${kind}`.trim();
}

export async function saveMapping(ctx: SaveContext, base = ctx.base()): Promise<void> {
  if (!ctx.canSave()) {
    say(
      ctx,
      'Not saved: this server does not save mappings (start it with serve --allow-mapping-edits, or allow_mapping_edits = true in its --config file). Your draft is kept in this browser.',
      'error',
    );
    return;
  }
  const text = ctx.text();
  if (ctx.button) ctx.button.disabled = true;
  say(ctx, 'Saving…', '');
  try {
    const updated = await put<TopicDetail>(
      `/topics/${enc(ctx.topic)}/mapping`,
      { mapping: text, base_version: base },
      { signal: ctx.signal, own: [403] },
    );
    closeConflict(ctx);
    ctx.saved(updated, text);
  } catch (e) {
    if (ctx.signal.aborted) return;
    if (e instanceof ApiError && e.status === 403) {
      ctx.refused();
      say(ctx, `Not saved: this server does not allow editing mappings (${e.message}). Your draft is kept in this browser.`, 'error');
    } else if (e instanceof ApiError && e.status === 409 && e.problem?.current) {
      say(ctx, 'Not saved: the mapping was changed on the server since you loaded it. Compare both versions below and choose.', 'error');
      showConflict(ctx, e.problem.current.mapping, e.problem.current.version, text);
    } else {
      const errors = e instanceof ApiError ? (e.problem?.errors ?? []) : [];
      ctx.invalid(errors, text);
      const where = errors
        .filter((x) => x.line !== null && x.line !== undefined)
        .map((x) => ` (line ${x.line}${x.column ? `, column ${x.column}` : ''})`)
        .join('');
      say(ctx, `Not saved: ${errorText(e)}${where}`, 'error');
    }
  } finally {
    if (ctx.button) ctx.button.disabled = false;
  }
}

function closeConflict(ctx: SaveContext) {
  ctx.conflict.replaceChildren();
  ctx.conflict.hidden = true;
}

/** Both versions as a diff, and the three ways on. */
function showConflict(ctx: SaveContext, theirs: string, version: string, mine: string) {
  const lines = diffLines(theirs, mine);
  const sign = { same: ' ', theirs: '−', mine: '+' } as const;
  const label = { same: 'in both', theirs: 'only on the server', mine: 'only in yours' } as const;
  const keepMine = h('button', { type: 'button', id: 'conflict-keep-mine', class: 'danger' }, 'Save mine over it');
  const takeTheirs = h('button', { type: 'button', id: 'conflict-take-theirs' }, 'Take the server’s version');
  const merge = h('button', { type: 'button', id: 'conflict-merge' }, 'Edit mine against it');
  keepMine.addEventListener('click', () => void saveMapping(ctx, version));
  takeTheirs.addEventListener('click', () => {
    closeConflict(ctx);
    ctx.takeTheirs(theirs, version);
    say(ctx, 'The editor holds the server’s version now (yours is one undo away: Ctrl+Z).', 'ok');
  });
  merge.addEventListener('click', () => {
    closeConflict(ctx);
    ctx.rebase(theirs, version);
    say(ctx, 'Your text is kept; the next save replaces the server’s version. “Revert to saved” shows the server’s version.', '');
  });
  fill(
    ctx.conflict,
    h('h3', { id: 'conflict-title' }, 'The mapping changed on the server'),
    h('p', { class: 'small' }, 'Lines marked − are only in the server’s file, lines marked + only in yours.'),
    h(
      'div',
      { class: 'diff-wrap', tabindex: '0', role: 'region', 'aria-label': 'Differences: the server’s file and yours' },
      h(
        'table',
        { class: 'diff', id: 'conflict-diff' },
        h('caption', { class: 'sr-only' }, 'Lines of the server’s file and of yours'),
        h('tbody', null, lines.map((l) => h('tr', { class: `diff-${l.kind}`, 'data-kind': l.kind }, h('td', { class: 'diff-sign', title: label[l.kind] }, h('span', { 'aria-hidden': 'true' }, sign[l.kind]), h('span', { class: 'sr-only' }, label[l.kind])), h('td', null, h('code', null, l.text || ' '))))),
      ),
    ),
    h('div', { class: 'button-row' }, keepMine, takeTheirs, merge),
  );
  ctx.conflict.hidden = false;
  keepMine.focus();
}
