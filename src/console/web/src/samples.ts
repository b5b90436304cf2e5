// Sample events as the analyst gives them: a JSON array, or one event per
// line as the source holds them (recordings, `fixtures/samples/*.jsonl`, the
// CLI's `--events`). The CLI tells the two apart the same way: an array
// starts with `[`.

export type SampleBody = { events: unknown[] } | { raw_events: string[] };

export type ParsedSample = { ok: true; body: SampleBody; count: number } | { ok: false; message: string };

export function parseSample(text: string): ParsedSample {
  const trimmed = text.trim();
  if (trimmed.startsWith('[')) {
    let events: unknown;
    try {
      events = JSON.parse(trimmed);
    } catch (e) {
      return { ok: false, message: `The sample events are not a valid JSON array (${e instanceof Error ? e.message : String(e)}). Give a JSON array, or one event per line.` };
    }
    if (!Array.isArray(events)) return { ok: false, message: 'The sample events must be a JSON array, or one event per line.' };
    return { ok: true, body: { events }, count: events.length };
  }
  // Each line is sent as it is: one that is not JSON is rejected by the
  // server with the reason a run gives.
  const lines = text.split(/\r?\n/).filter((line) => line.trim() !== '');
  return { ok: true, body: { raw_events: lines }, count: lines.length };
}

/** The largest file read into the sample editor. */
export const MAX_SAMPLE_FILE = 8 << 20;
