// Shapes of the materializer HTTP API (JSON). Fields marked optional may be
// absent on older servers.

export interface SqlError {
  line: number | null;
  column: number | null;
  message: string;
}

/** RFC 9457 problem document. */
export interface Problem {
  type?: string;
  title?: string;
  status?: number;
  detail?: string;
  errors?: SqlError[];
  /** A save refused because the file changed: the file as it is now. */
  current?: { mapping: string; version: string };
}

export interface LastRun {
  sequence: number;
  committed_at: string;
  main_rows: number;
  correction_rows: number;
  events_read: number;
  compaction_rate: number | null;
}

export interface TopicSummary {
  name: string;
  event_type: string | null;
  status: string; // ok | stale | broken
  error: string | null;
  running: boolean;
  partitioning_key?: string[];
  ordering_key?: string;
  format?: string;
  error_at?: { file: string; line: number | null; column: number | null } | null;
  last_run?: LastRun | null;
}

export interface Column {
  name: string;
  type: string;
  nullable: boolean;
  children?: Column[];
}

export interface TopicDetail {
  name: string;
  event_type: string;
  partitioning_key: string[];
  ordering_key: string;
  output: Record<string, unknown>;
  source: Record<string, unknown>;
  schema_origin: string;
  events: Column[];
  schema_warnings: string[];
  mapping_sql: string;
  mapping_version?: string;
  output_view: string;
  output_columns: Column[];
  generated_sql: string;
  error: string | null;
}

export interface PreviewTable {
  columns: string[];
  rows: Record<string, unknown>[];
  truncated?: boolean;
}

export interface Counts {
  events_read: number;
  events_rejected: number;
  main_input: number;
  superseded: number;
  correction_events: number;
  main_rows: number;
  correction_rows: number;
  older_rows?: number;
  deletes?: number;
}

export interface PreviewResponse {
  main: PreviewTable;
  correction: PreviewTable;
  rejected: { index: number; reason: string }[];
  counts: Counts;
  /** The server's figure (the one a run and `materializer preview` report). */
  compaction_rate?: number;
}

export interface Progress {
  partitions_total: number;
  partitions_finished: number;
  events_read: number;
  bytes_read: number;
  events_planned?: number | null;
  recording_bytes?: number | null;
  recording_bytes_read?: number | null;
  events_rejected: number;
  main_rows: number;
  correction_rows: number;
  files_written: number;
  bytes_written: number;
  retries: number;
}

export type RunState = 'queued' | 'running' | 'committing' | 'succeeded' | 'failed' | 'stopped';

export interface RunView {
  id: string;
  topic: string;
  state: RunState | string;
  stop_requested: boolean;
  sequence: number | null;
  outcome: 'committed' | 'nothing_new' | string | null;
  queued_at: string;
  started_at: string | null;
  finished_at: string | null;
  seconds: number | null;
  progress: Progress;
  compaction_rate: number | null;
  counts: Counts | null;
  files: number | null;
  error: string | null;
  label?: string;
  error_class?: RunErrorClass | null;
  partitions?: PartitionCursors[] | null;
  timings?: Timings | null;
  events_per_second?: number | null;
  keys_rows?: number | null;
}

export interface RunErrorClass {
  class: string;
  type: string;
  title: string;
  advice: string;
  retryable: boolean;
  exit_code: number;
}

export interface PartitionCursors {
  partition: string;
  before: string;
  after: string;
  events: number | null;
}

export interface Timings {
  plan: number;
  read: number;
  map_write: number;
  key_state: number;
  commit: number;
}

export interface FilePreview {
  path: string;
  kind: string;
  format: string;
  columns: string[];
  rows: (string | null)[][];
  truncated: boolean;
  total_rows: number;
}

export interface MappingFile {
  topic: string;
  mapping: string;
  version: string;
  served_version: string | null;
  status: string;
  error: string | null;
  error_at: { file: string; line: number | null; column: number | null } | null;
  errors: SqlError[];
}

export interface SourceEvents {
  source: string;
  partitions: string[];
  events: { partition: string; offset: string; event: string }[];
  scanned: number;
  more: boolean;
}

export interface Triggered {
  id: string;
  status_url: string;
  state: string;
}

export interface RunFile {
  path: string;
  kind: 'main' | 'correction' | 'rejected' | 'keys' | string;
  partition: string | number | null;
  output_partition: [string, unknown][] | null;
  rows: number;
  bytes: number;
  sha256?: string;
}

export interface Sample {
  events: unknown[];
  lines?: string[];
  source: string;
}

export interface Info {
  version: string;
  mapping_edits: boolean;
  preview_timeout_seconds: number;
  preview_max_events: number;
}

export function isActive(state: string): boolean {
  return state === 'queued' || state === 'running' || state === 'committing';
}
