// The REST API as the console uses it: same-origin, the session cookie,
// and the X-Mote-Console header that the server asks for on changes.

export class ApiError extends Error {
  status: number;
  field?: string;
  constructor(status: number, message: string, field?: string) {
    super(message);
    this.status = status;
    this.field = field;
  }
}

let onUnauthorized: () => void = () => {};
export function setUnauthorizedHandler(fn: () => void): void {
  onUnauthorized = fn;
}

export async function api<T = any>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { "X-Mote-Console": "1", Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let res: Response;
  try {
    res = await fetch("/api/v1" + path, {
      method,
      headers,
      credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, "The server cannot be reached. Is Mote running?");
  }
  if (res.status === 204) return undefined as T;
  const text = await res.text();
  let data: any = undefined;
  try {
    data = text ? JSON.parse(text) : undefined;
  } catch {
    data = undefined;
  }
  if (!res.ok) {
    if (res.status === 401 && path !== "/auth/login") onUnauthorized();
    const detail = data?.detail || data?.title || `${res.status} ${res.statusText}`;
    const msg = data?.field ? `${detail}` : detail;
    throw new ApiError(res.status, msg, data?.field);
  }
  return data as T;
}

export const get = <T = any>(p: string) => api<T>("GET", p);
export const post = <T = any>(p: string, b?: unknown) => api<T>("POST", p, b ?? {});
export const patch = <T = any>(p: string, b: unknown) => api<T>("PATCH", p, b);
export const put = <T = any>(p: string, b: unknown) => api<T>("PUT", p, b);
export const del = (p: string) => api<void>("DELETE", p);

export const enc = encodeURIComponent;

export interface Thing {
  name: string;
  type?: string;
  attributes: Record<string, string>;
  tags: string[];
  groups: string[];
  policies: string[];
  enabled: boolean;
  connected: boolean;
  lastSeen?: string;
  createdAt: string;
  updatedAt: string;
  stats?: ThingStats;
}

export interface ThingStats {
  publishDenied: number;
  invalidTelemetry: number;
  lastDeniedTopic?: string;
  lastDeniedAt?: string;
  lastInvalidAt?: string;
  // Telemetry and reported values outside the type's device model.
  modelViolations?: number;
  lastModelViolation?: { kind: string; key: string; value?: unknown; reason: string };
  lastModelViolationAt?: string;
}

export interface List<T> {
  items: T[];
  nextCursor?: string;
  total?: number; // GET /things
}

export interface Me {
  user: string;
  role: string;
  via: string;
  groups?: string[];
}

// Stats is GET /stats: the overview's counts in one request.
export interface Stats {
  things: { total: number; connected: number; disabled: number };
  scoped?: boolean; // a user scoped to groups: its things only, no rules or messages
  rules?: { total: number; enabled: number; failing: { name: string; errors: number; matched: number }[]; matched: number; errors: number };
  messages?: { inPerSecond: number; outPerSecond: number; connections: number; time?: string };
}

// The connection to the server as the event streams see it: a notice is
// shown while it is lost (main.ts), and pages reload what they show when
// it is back (they missed the events in between).
const connListeners = new Set<(lost: boolean) => void>();
let streamsLost = 0;
export function onConnectionChange(fn: (lost: boolean) => void): () => void {
  connListeners.add(fn);
  return () => connListeners.delete(fn);
}
function setLost(delta: number): void {
  const before = streamsLost > 0;
  streamsLost = Math.max(0, streamsLost + delta);
  const after = streamsLost > 0;
  if (before !== after) for (const fn of connListeners) fn(after);
}

export interface Stream {
  close(): void;
}

// events opens the server's event stream; close it when leaving a page.
// When the connection drops it is retried; reconnected, if given, runs
// once it is back so the page can reload what it missed.
export function events(query: string, handlers: Record<string, (data: any) => void>, reconnected?: () => void): Stream {
  let es: EventSource | null = null;
  let lost = false;
  let closed = false;
  let retry: number | undefined;
  const open = () => {
    es = new EventSource("/api/v1/events?" + query, { withCredentials: true });
    es.addEventListener("open", () => {
      if (lost) {
        lost = false;
        setLost(-1);
        reconnected?.();
      }
    });
    es.addEventListener("error", () => {
      if (closed) return;
      if (!lost) {
        lost = true;
        setLost(+1);
      }
      // The browser retries by itself unless the answer was not a stream
      // (e.g. 503 while the server starts): then open a new one.
      if (es && es.readyState === EventSource.CLOSED) {
        es = null;
        window.clearTimeout(retry);
        retry = window.setTimeout(open, 2000);
      }
    });
    for (const [name, fn] of Object.entries(handlers)) {
      es.addEventListener(name, (ev) => {
        try {
          fn(JSON.parse((ev as MessageEvent).data));
        } catch {
          /* a malformed event is skipped */
        }
      });
    }
  };
  open();
  return {
    close() {
      closed = true;
      window.clearTimeout(retry);
      es?.close();
      if (lost) setLost(-1);
    },
  };
}
