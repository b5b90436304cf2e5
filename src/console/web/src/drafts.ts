// Drafts of mappings (and the sample events they are tried on), kept per
// topic in the browser's localStorage: they survive leaving the workbench,
// a reload and a closed tab, until they are saved or reverted.

const PREFIX = 'materializer.draft.';

export interface Draft {
  /** The mapping as edited. */
  mapping: string;
  /** The version of the saved text the draft was started from. */
  base: string;
  /** The sample events typed or pasted, when they are the analyst's own. */
  sample?: string;
  /** When it was last changed (ISO). */
  at: string;
}

function storage(): Storage | null {
  try {
    return window.localStorage;
  } catch {
    return null;
  }
}

export function loadDraft(topic: string): Draft | null {
  const text = storage()?.getItem(PREFIX + topic);
  if (!text) return null;
  try {
    const draft = JSON.parse(text) as Draft;
    return typeof draft.mapping === 'string' && typeof draft.base === 'string' ? draft : null;
  } catch {
    return null;
  }
}

/** Keeps a draft; answers false when the browser refused (storage full or off). */
export function saveDraft(topic: string, draft: Omit<Draft, 'at'>): boolean {
  const store = storage();
  if (!store) return false;
  try {
    store.setItem(PREFIX + topic, JSON.stringify({ ...draft, at: new Date().toISOString() }));
    return true;
  } catch {
    return false;
  }
}

export function dropDraft(topic: string): void {
  try {
    storage()?.removeItem(PREFIX + topic);
  } catch {
    /* storage unavailable */
  }
}

/** Topics with a draft kept in this browser. */
export function draftTopics(): Set<string> {
  const store = storage();
  const topics = new Set<string>();
  if (!store) return topics;
  for (let i = 0; i < store.length; i++) {
    const key = store.key(i);
    if (key?.startsWith(PREFIX)) topics.add(key.slice(PREFIX.length));
  }
  return topics;
}

// ---- leaving with unsaved work: the browser asks first

const unsaved = new Set<string>();

/** Marks whether `topic` has changes not saved to the server. */
export function setUnsaved(topic: string, on: boolean): void {
  if (on) unsaved.add(topic);
  else unsaved.delete(topic);
}

window.addEventListener('beforeunload', (event) => {
  if (unsaved.size === 0) return;
  // The draft is kept in this browser, but not on the server: a reload or a
  // closed tab asks first.
  event.preventDefault();
  event.returnValue = '';
});
