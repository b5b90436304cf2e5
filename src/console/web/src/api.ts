// HTTP client of the materializer API: bearer token, problem documents,
// the run event stream (SSE read with fetch) and its polling fallback.

import { sleep } from './dom';
import type { Info, Problem, RunView } from './types';
import { isActive } from './types';

const TOKEN_KEY = 'materializer.token';

/** The token lives in sessionStorage only. */
export const auth = {
  token(): string | null {
    try {
      return sessionStorage.getItem(TOKEN_KEY);
    } catch {
      return null;
    }
  },
  set(token: string): void {
    sessionStorage.setItem(TOKEN_KEY, token);
  },
  clear(): void {
    try {
      sessionStorage.removeItem(TOKEN_KEY);
    } catch {
      /* storage unavailable */
    }
  },
};

export class ApiError extends Error {
  readonly status: number;
  readonly problem: Problem | null;
  constructor(status: number, message: string, problem: Problem | null) {
    super(message);
    this.status = status;
    this.problem = problem;
  }
}

/** Called with a readable message when the server refuses the token. */
let onAuthFailure: (message: string) => void = () => {};
export function setAuthFailureHandler(handler: (message: string) => void): void {
  onAuthFailure = handler;
}

export function isAbort(e: unknown): boolean {
  return e instanceof DOMException && e.name === 'AbortError';
}

/** A readable text for an error caught from `request`. */
export function errorText(e: unknown): string {
  if (e instanceof ApiError) return e.message;
  if (e instanceof Error) return e.message;
  return String(e);
}

export interface RequestOptions {
  body?: unknown;
  signal?: AbortSignal;
  /** Token to use instead of the stored one (login). */
  token?: string | null;
  /** Statuses the caller handles itself (no return to the login page). */
  own?: number[];
}

function headers(token: string | null | undefined, json: boolean): Headers {
  const h = new Headers({ Accept: 'application/json, application/problem+json' });
  if (json) h.set('Content-Type', 'application/json');
  if (token) h.set('Authorization', `Bearer ${token}`);
  return h;
}

async function problemOf(response: Response): Promise<{ problem: Problem | null; text: string }> {
  const text = await response.text().catch(() => '');
  try {
    const parsed = JSON.parse(text) as Problem;
    if (parsed && typeof parsed === 'object') return { problem: parsed, text };
  } catch {
    /* not JSON */
  }
  return { problem: null, text };
}

function messageOf(status: number, statusText: string, problem: Problem | null, text: string): string {
  if (problem?.detail) return problem.detail;
  if (problem?.title) return problem.title;
  const snippet = text.trim().slice(0, 200);
  return snippet ? `${status} ${statusText}: ${snippet}` : `The server answered ${status} ${statusText}`.trim();
}

/** Sends a request; throws ApiError for any answer that is not 2xx. */
export async function request<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
  const token = options.token !== undefined ? options.token : auth.token();
  let response: Response;
  try {
    response = await fetch(path, {
      method,
      headers: headers(token, options.body !== undefined),
      body: options.body !== undefined ? JSON.stringify(options.body) : undefined,
      signal: options.signal,
      cache: 'no-store',
    });
  } catch (e) {
    if (isAbort(e)) throw e;
    throw new ApiError(0, `Cannot reach the server (${errorText(e)})`, null);
  }
  if (!response.ok) {
    const { problem, text } = await problemOf(response);
    const message = messageOf(response.status, response.statusText, problem, text);
    const error = new ApiError(response.status, message, problem);
    if ((response.status === 401 || response.status === 403) && !options.own?.includes(response.status)) {
      onAuthFailure(
        response.status === 401
          ? `The server asks for a token (401): ${message}`
          : `The server refused the token (403): ${message}`,
      );
    }
    throw error;
  }
  if (response.status === 204) return undefined as T;
  const text = await response.text();
  return (text ? JSON.parse(text) : undefined) as T;
}

export const get = <T>(path: string, options?: RequestOptions) => request<T>('GET', path, options);
export const post = <T>(path: string, body?: unknown, options?: RequestOptions) =>
  request<T>('POST', path, { ...options, body });
export const put = <T>(path: string, body?: unknown, options?: RequestOptions) =>
  request<T>('PUT', path, { ...options, body });

/**
 * Downloads a file of the API (sent with the token, which a plain link
 * cannot send): fetched, then handed to the browser as a file named `name`.
 */
export async function download(path: string, name: string, signal?: AbortSignal): Promise<void> {
  const token = auth.token();
  const h = new Headers();
  if (token) h.set('Authorization', `Bearer ${token}`);
  const response = await fetch(path, { headers: h, signal, cache: 'no-store' });
  if (!response.ok) {
    const { problem, text } = await problemOf(response);
    throw new ApiError(response.status, messageOf(response.status, response.statusText, problem, text), problem);
  }
  const url = URL.createObjectURL(await response.blob());
  const link = document.createElement('a');
  link.href = url;
  link.download = name;
  link.hidden = true;
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

// ---------------------------------------------------------------- /info

const defaultInfo: Info = { version: '', mapping_edits: false, preview_timeout_seconds: 0, preview_max_events: 0 };
let info: Promise<Info> | null = null;

/** GET /info, once per login; an older server without it allows no edits. */
export function getInfo(): Promise<Info> {
  if (!info) {
    info = get<Partial<Info>>('/info')
      .then((i) => ({ ...defaultInfo, ...i }))
      .catch((e) => {
        info = null;
        if (e instanceof ApiError && (e.status === 401 || e.status === 403)) throw e;
        return defaultInfo;
      });
  }
  return info;
}

export function forgetInfo(): void {
  info = null;
}

// ---------------------------------------------------------------- SSE

export interface SseEvent {
  event: string;
  data: string;
}

/** Incremental parser of a text/event-stream body. */
export class SseParser {
  private buffer = '';
  private type = '';
  private data: string[] = [];

  constructor(private readonly emit: (event: SseEvent) => void) {}

  push(chunk: string): void {
    this.buffer += chunk;
    for (;;) {
      const match = /\r\n|\r|\n/.exec(this.buffer);
      if (!match) break;
      // A lone CR at the end of the buffer may be the start of CRLF.
      if (match[0] === '\r' && match.index === this.buffer.length - 1) break;
      const line = this.buffer.slice(0, match.index);
      this.buffer = this.buffer.slice(match.index + match[0].length);
      this.line(line);
    }
  }

  /** End of the stream: a pending event without its blank line is dropped, as EventSource does. */
  end(): void {
    this.buffer = '';
    this.type = '';
    this.data = [];
  }

  private line(line: string): void {
    if (line === '') {
      if (this.data.length > 0) this.emit({ event: this.type || 'message', data: this.data.join('\n') });
      this.type = '';
      this.data = [];
      return;
    }
    if (line.startsWith(':')) return;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') this.type = value;
    else if (field === 'data') this.data.push(value);
  }
}

/**
 * Follows a run until it ends: the SSE stream GET /runs/{id}/events read with
 * fetch (so the Authorization header is sent), else polling GET /runs/{id}
 * every second. Resolves with the last view seen.
 */
export async function watchRun(
  id: string,
  onView: (view: RunView, source: 'stream' | 'poll') => void,
  signal: AbortSignal,
): Promise<RunView | null> {
  let last: RunView | null = null;
  let ended = false;
  const path = `/runs/${encodeURIComponent(id)}`;
  try {
    const token = auth.token();
    const h = new Headers({ Accept: 'text/event-stream' });
    if (token) h.set('Authorization', `Bearer ${token}`);
    const response = await fetch(`${path}/events`, { headers: h, signal, cache: 'no-store' });
    if (response.status === 401 || response.status === 403) {
      const { problem, text } = await problemOf(response);
      onAuthFailure(`The server refused the token (${response.status}): ${messageOf(response.status, response.statusText, problem, text)}`);
      return null;
    }
    const type = response.headers.get('Content-Type') ?? '';
    if (response.ok && response.body && type.startsWith('text/event-stream')) {
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      const parser = new SseParser(({ event, data }) => {
        if (event !== 'progress' && event !== 'end' && event !== 'message') return;
        try {
          last = JSON.parse(data) as RunView;
        } catch {
          return;
        }
        onView(last, 'stream');
        if (event === 'end') ended = true;
      });
      while (!ended) {
        const { value, done } = await reader.read();
        if (done) break;
        parser.push(value);
      }
      parser.end();
      if (ended) {
        reader.cancel().catch(() => {});
        return last;
      }
    } else {
      response.body?.cancel().catch(() => {});
    }
  } catch (e) {
    if (signal.aborted || isAbort(e)) return last;
  }
  // The stream failed or closed early: poll.
  while (!signal.aborted) {
    try {
      const view = await get<RunView>(path, { signal });
      last = view;
      onView(view, 'poll');
      if (!isActive(view.state)) return view;
    } catch (e) {
      if (signal.aborted || isAbort(e)) return last;
      if (e instanceof ApiError && (e.status === 401 || e.status === 403 || e.status === 404)) return last;
    }
    await sleep(1000, signal);
  }
  return last;
}
