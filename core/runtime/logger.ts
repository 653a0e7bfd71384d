/**
 * Structured logs: one line per event, message plus fields. Services take a Logger so the CLI
 * host, the Electron host and tests decide where lines go and how many.
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';
export type LogFields = Record<string, unknown>;
/** `text`: `time level msg k=v ...` for people; `json`: one JSON object a line for collectors. */
export type LogFormat = 'text' | 'json';
export const LOG_FORMATS: readonly LogFormat[] = ['text', 'json'];

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  child(fields: LogFields): Logger;
}

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

export function isLogLevel(v: string): v is LogLevel {
  return Object.hasOwn(RANK, v);
}

export function isLogFormat(v: string): v is LogFormat {
  return (LOG_FORMATS as readonly string[]).includes(v);
}

/** Longest Buffer shown in a log field, in bytes (the rest is counted, not printed). */
export const MAX_LOGGED_BUFFER_BYTES = 64;

/**
 * A field value as JSON can carry it: an Error as {name, message, code, cause}, a Buffer as a
 * short hex preview, a bigint as its decimal string, an object inside itself as "[Circular]".
 * JSON.stringify would drop Errors to `{}`, spell a Buffer out byte by byte, and throw on a
 * bigint or a cycle: a log call must never throw, nor lose the one field that explains a fault.
 */
function replacer(): (this: unknown, key: string, value: unknown) => unknown {
  // The objects on the path from the root to the value being serialized: `holder` is what
  // JSON.stringify passes as `this` to their children, `original` what the caller logged.
  const path: { holder: unknown; original: object }[] = [];
  return function (this: unknown, key: string, value: unknown): unknown {
    // JSON.stringify has already called Buffer's toJSON; the holder still has the Buffer.
    const raw = (this as Record<string, unknown>)[key];
    if (typeof raw === 'bigint') return raw.toString();
    if (Buffer.isBuffer(raw)) {
      const hex = raw.subarray(0, MAX_LOGGED_BUFFER_BYTES).toString('hex');
      return raw.length > MAX_LOGGED_BUFFER_BYTES ? `<Buffer ${hex}… ${raw.length} bytes>` : `<Buffer ${hex}>`;
    }
    if (typeof raw !== 'object' || raw === null || typeof value !== 'object' || value === null) return value;
    while (path.length > 0 && path[path.length - 1]!.holder !== this) path.pop();
    if (path.some((p) => p.original === raw)) return '[Circular]';
    let out: object = value;
    if (raw instanceof Error) {
      const code = (raw as NodeJS.ErrnoException).code;
      out = { name: raw.name, message: raw.message, ...(code !== undefined ? { code } : {}), ...(raw.cause !== undefined ? { cause: raw.cause } : {}) };
    }
    path.push({ holder: out, original: raw });
    return out;
  };
}

/** JSON text of a value, or a JSON string saying why it cannot be serialized (a toJSON that throws). */
function safeJson(v: unknown): string {
  // Most fields are strings and numbers: no replacer, no holder.
  if (typeof v === 'string' || typeof v === 'boolean' || v === null) return JSON.stringify(v);
  if (typeof v === 'number') return Number.isFinite(v) ? String(v) : 'null';
  try {
    // Through a holder, so the replacer sees the value itself before any toJSON (a Buffer's).
    const out = JSON.stringify({ v }, replacer());
    if (out !== '{}') return out.slice('{"v":'.length, -1);
    // `{}`: a value JSON has no spelling for.
    return JSON.stringify(typeof v === 'function' ? `[function ${v.name}]` : typeof v === 'symbol' ? v.toString() : 'undefined');
  } catch (err: unknown) {
    return JSON.stringify(`[unserializable: ${(err as Error).message}]`);
  }
}

function fmt(v: unknown): string {
  if (typeof v === 'string') return /[\s"=]/.test(v) ? JSON.stringify(v) : v;
  return safeJson(v);
}

/** Keys a JSON line always starts with; fields with these names are prefixed `field.` instead of overwriting them. */
const RESERVED = new Set(['time', 'level', 'msg']);

function textLine(level: LogLevel, msg: string, all: LogFields): string {
  const tail = Object.entries(all)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}=${fmt(v)}`)
    .join(' ');
  return `${new Date().toISOString()} ${level.padEnd(5)} ${msg}${tail ? ' ' + tail : ''}`;
}

function jsonLine(level: LogLevel, msg: string, all: LogFields): string {
  const line: LogFields = { time: new Date().toISOString(), level, msg };
  let plain = true;
  for (const k in all) {
    const v = all[k];
    if (v === undefined) continue;
    if (typeof v === 'object' || typeof v === 'bigint' || typeof v === 'function' || typeof v === 'symbol') plain = false;
    line[RESERVED.has(k) ? `field.${k}` : k] = v;
  }
  // JSON.stringify escapes newlines in strings, so a multi-line message stays on one line.
  if (plain) return JSON.stringify(line);
  // Objects: each field serialized on its own, so one that cannot be costs only itself.
  let text = '{';
  for (const k in line) text += `${text === '{' ? '' : ','}${JSON.stringify(k)}:${safeJson(line[k])}`;
  return text + '}';
}

/** Log lines to a writer (stderr by default), as text (default) or JSON. */
export function createLogger(
  opts: { level?: LogLevel; format?: LogFormat; write?: (line: string) => void; fields?: LogFields } = {},
): Logger {
  const min = RANK[opts.level ?? 'info'];
  const write = opts.write ?? ((line: string) => process.stderr.write(line + '\n'));
  const base = opts.fields ?? {};
  const line = opts.format === 'json' ? jsonLine : textLine;
  const emit = (level: LogLevel, msg: string, fields?: LogFields): void => {
    if (RANK[level] < min) return;
    write(line(level, msg, { ...base, ...fields }));
  };
  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
    child: (fields) => createLogger({ ...opts, fields: { ...base, ...fields } }),
  };
}

export const silentLogger: Logger = createLogger({ level: 'silent' });
