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
}

export interface List<T> {
  items: T[];
  nextCursor?: string;
}

export interface Me {
  user: string;
  role: string;
  via: string;
}

// Rule counters come from the Prometheus metrics the server exposes.
export interface RuleCounters {
  matched: number;
  errors: number;
}

export async function ruleCounters(): Promise<Map<string, RuleCounters>> {
  const out = new Map<string, RuleCounters>();
  const res = await fetch("/metrics", { credentials: "same-origin" });
  if (!res.ok) return out;
  const text = await res.text();
  const re = /^mote_rule_(matched|errors)_total\{rule="((?:[^"\\]|\\.)*)"\} ([0-9.e+]+)$/gm;
  for (const m of text.matchAll(re)) {
    const c = out.get(m[2]) ?? { matched: 0, errors: 0 };
    c[m[1] as "matched" | "errors"] = Number(m[3]);
    out.set(m[2], c);
  }
  return out;
}

// events opens the server's event stream; close it when leaving a page.
export function events(query: string, handlers: Record<string, (data: any) => void>): EventSource {
  const es = new EventSource("/api/v1/events?" + query, { withCredentials: true });
  for (const [name, fn] of Object.entries(handlers)) {
    es.addEventListener(name, (ev) => {
      try {
        fn(JSON.parse((ev as MessageEvent).data));
      } catch {
        /* a malformed event is skipped */
      }
    });
  }
  return es;
}
