import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { api, enc, events, get, List, onConnectionChange, post, Stream } from "./api";
import { clear, errorBox, field, fmtTime, h, plural, tableWrap } from "./ui";
import { canChangeFleet as canOperate } from "./main"; // dashboards are fleet-wide: not for a scoped user

// Dashboards (docs/dashboards.md): a list page and a dashboard page that
// composes widgets on a 12-column grid from the documented REST API, with
// an edit mode (add, move, resize, remove, save) and a full-screen mode
// for a wall display (?fullscreen=1: no navigation).
//
// Live: the latest-values, gauge, chart and alarm-list widgets follow the
// event stream (GET /events?telemetry=THINGS&alarms=1); polling every
// ?refresh= seconds (default 5) remains for the other widgets, and for
// all of them while the stream is lost.

export interface Grid {
  x: number;
  y: number;
  w: number;
  h: number;
}

export interface Widget {
  id: string;
  type: string;
  title?: string;
  grid: Grid;
  things?: string[];
  group?: string;
  keys?: string[];
  window?: string;
  min?: number;
  max?: number;
  command?: string;
  payload?: unknown;
}

interface Dashboard {
  name: string;
  title: string;
  widgets: Widget[];
  version: number;
  createdAt: string;
  updatedAt: string;
}

interface DashboardSummary {
  name: string;
  title: string;
  widgets: number;
  version: number;
  updatedAt: string;
}

interface Point {
  thing: string;
  key: string;
  ts: number;
  value: unknown;
}

const types: [string, string][] = [
  ["timeseries", "Time-series chart"],
  ["latest", "Latest values"],
  ["gauge", "Gauge"],
  ["map", "Map"],
  ["alarms", "Alarm list"],
  ["command", "Command button"],
];

const REFRESH_MS = 5000;

export function dashboardsPage(main: HTMLElement): void {
  const err = errorBox();
  const body = h("tbody", {});
  const name = h("input", { name: "name", required: true, placeholder: "plant" });
  const title = h("input", { name: "title", placeholder: "Plant floor" });
  const ferr = errorBox();
  const form = h(
    "form",
    { class: "card", "aria-labelledby": "new-dashboard-h" },
    h("h2", { id: "new-dashboard-h" }, "New dashboard"),
    ferr.el,
    h("div", { class: "grid" }, field("Name", name), field("Title", title)),
    h("button", { type: "submit" }, "Create dashboard"),
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    ferr.hide();
    try {
      const d = await post<Dashboard>("/dashboards", { name: name.value.trim(), title: title.value.trim(), widgets: [] });
      history.pushState(null, "", `/dashboards/${enc(d.name)}?edit=1`);
      dispatchEvent(new PopStateEvent("popstate"));
    } catch (e) {
      ferr.show(e);
    }
  });
  clear(
    main,
    h("h1", {}, "Dashboards"),
    err.el,
    h("section", { class: "card" }, tableWrap(h("table", { "data-testid": "dashboards" },
      h("thead", {}, h("tr", {}, ...["Name", "Title", "Widgets", "Updated"].map((c) => h("th", { scope: "col" }, c)))),
      body))),
    canOperate() ? form : null,
  );
  (async () => {
    try {
      const list = await get<List<DashboardSummary>>("/dashboards?limit=1000");
      clear(
        body,
        list.items.length === 0
          ? h("tr", {}, h("td", { colspan: 4, class: "muted" }, "No dashboards yet: create one below."))
          : list.items.map((d) =>
              h("tr", {}, h("td", {}, h("a", { href: `/dashboards/${enc(d.name)}` }, d.name)), h("td", {}, d.title), h("td", {}, String(d.widgets)), h("td", {}, fmtTime(d.updatedAt))),
            ),
      );
    } catch (e) {
      err.show(e);
    }
  })();
}

export function dashboardPage(main: HTMLElement, params: Record<string, string>): () => void {
  const name = params.name;
  const q = new URLSearchParams(location.search);
  const fullscreen = q.get("fullscreen") === "1";
  let editing = q.get("edit") === "1" && canOperate(); // a viewer may not change it
  const err = errorBox();
  const gridEl = h("div", { class: "dash-grid", "data-testid": "dashboard-grid" });
  const heading = h("h1", {}, name);
  const toolbar = h("div", { class: "dash-toolbar" });
  const editor = h("div", {});
  const saved = h("span", { class: "muted", role: "status", "aria-live": "polite", "data-testid": "save-status" });
  let dash: Dashboard | null = null;
  let dirty = false;
  let stopped = false;
  let timer: number | undefined;
  const cleanups: (() => void)[] = [];
  const pollMS = Math.max(1000, Number(q.get("refresh") ?? "") * 1000 || REFRESH_MS);
  // The live stream and the values it brought ("thing key" → point).
  let stream: Stream | null = null;
  let streamQuery = "";
  let streamLost = false;
  const liveVals = new Map<string, Point>();
  const stopConn = onConnectionChange((lost) => (streamLost = lost));

  if (fullscreen) document.body.classList.add("fullscreen");
  clear(main, h("div", { class: "dash-head" }, heading, toolbar), err.el, editor, gridEl);

  function renderToolbar(): void {
    const fsLink = fullscreen
      ? h("a", { href: `/dashboards/${enc(name)}`, class: "button", "data-testid": "exit-fullscreen" }, "Exit full screen")
      : h("a", { href: `/dashboards/${enc(name)}?fullscreen=1`, class: "button", "data-testid": "fullscreen", onclick: () => document.documentElement.requestFullscreen?.().catch(() => {}) }, "Full screen");
    if (fullscreen) {
      clear(toolbar, fsLink);
      return;
    }
    const edit = h("button", { type: "button", "aria-pressed": editing ? "true" : "false", onclick: () => { editing = !editing; render(); } }, editing ? "Done editing" : "Edit");
    const save = h("button", { type: "button", disabled: !dirty, "data-testid": "save", onclick: saveDashboard }, "Save");
    clear(toolbar, canOperate() ? [edit, editing ? save : null] : null, fsLink, saved, h("a", { href: "/dashboards" }, "All dashboards"));
  }

  async function saveDashboard(): Promise<void> {
    if (!dash) return;
    err.hide();
    try {
      dash = await api<Dashboard>("PUT", `/dashboards/${enc(name)}`, { title: dash.title, widgets: dash.widgets, version: dash.version });
      dirty = false;
      saved.textContent = `Saved (version ${dash.version}).`;
      render();
    } catch (e: any) {
      if (e?.status === 412) err.show("Someone else changed this dashboard since you opened it. Reload the page to see their version (your changes here are not saved).");
      else err.show(e);
    }
  }

  function change(fn: () => void): void {
    fn();
    dirty = true;
    saved.textContent = "Unsaved changes.";
    render();
  }

  function render(): void {
    if (!dash) return;
    heading.textContent = dash.title || dash.name;
    document.title = `${dash.title || dash.name} · Mote`;
    renderToolbar();
    clear(editor, editing && !fullscreen ? addForm() : null);
    for (const c of cleanups.splice(0)) c();
    clear(gridEl);
    gridEl.classList.toggle("editing", editing);
    if (dash.widgets.length === 0) gridEl.append(h("p", { class: "muted" }, editing ? "No widgets yet: add one above." : "No widgets yet: press Edit to add some."));
    for (const w of dash.widgets) gridEl.append(widgetBox(w));
    refresh(true);
    openStream();
  }

  // --- live ---
  const liveTypes = new Set(["latest", "gauge", "timeseries"]);
  async function openStream(): Promise<void> {
    if (!dash) return;
    const things = new Set<string>();
    for (const w of dash.widgets) if (liveTypes.has(w.type)) for (const t of await targets(w).catch(() => [])) things.add(t);
    const parts: string[] = [];
    if (things.size) parts.push("telemetry=" + [...things].slice(0, 100).map(enc).join(","));
    if (dash.widgets.some((w) => w.type === "alarms")) parts.push("alarms=1");
    const query = parts.join("&");
    if (query === streamQuery || stopped) return;
    stream?.close();
    stream = null;
    streamQuery = query;
    if (!query) return;
    stream = events(
      query,
      {
        telemetry: (e: { thing: string; time: string; payload?: Record<string, unknown> }) => {
          if (!e.payload || typeof e.payload !== "object") return;
          const ts = Date.parse(e.time) || Date.now();
          for (const [key, value] of Object.entries(e.payload)) liveVals.set(`${e.thing} ${key}`, { thing: e.thing, key, ts, value });
          for (const w of dash?.widgets ?? []) {
            if (!liveTypes.has(w.type)) continue;
            targets(w).then((ts) => ts.includes(e.thing) && soon(w.id, w.type === "timeseries" ? 1000 : 0));
          }
        },
        alarm: () => {
          for (const w of dash?.widgets ?? []) if (w.type === "alarms") soon(w.id, 300);
        },
        dropped: () => refresh(true),
      },
      () => refresh(true),
    );
  }
  // soon reloads one widget after delay ms (once, however many events).
  const pending = new Map<string, number>();
  function soon(id: string, delay: number): void {
    if (pending.has(id)) return;
    pending.set(id, window.setTimeout(() => {
      pending.delete(id);
      loaders.get(id)?.(true); // a live update: the stream's values over what was read last
    }, delay));
  }

  function widgetBox(w: Widget): HTMLElement {
    const body = h("div", { class: "widget-body" });
    const box = h(
      "section",
      {
        class: `widget widget-${w.type}`,
        "data-widget": w.id,
        "aria-labelledby": `w-${w.id}-h`,
        style: `grid-column: ${w.grid.x + 1} / span ${w.grid.w}; grid-row: ${w.grid.y + 1} / span ${w.grid.h};`,
      },
      h("h2", { id: `w-${w.id}-h` }, w.title || defaultTitle(w)),
      editing && !fullscreen ? controls(w) : null,
      body,
    );
    loaders.set(w.id, (live?: boolean) => loadWidget(w, body, live));
    return box;
  }

  function controls(w: Widget): HTMLElement {
    const label = w.title || w.id;
    const b = (text: string, aria: string, fn: () => void, disabled = false) =>
      h("button", { type: "button", class: "small", "aria-label": `${aria} ${label}`, disabled, onclick: () => change(fn) }, text);
    const g = w.grid;
    return h(
      "div",
      { class: "widget-controls" },
      b("←", "Move left", () => g.x--, g.x === 0),
      b("→", "Move right", () => g.x++, g.x + g.w >= 12),
      b("↑", "Move up", () => g.y--, g.y === 0),
      b("↓", "Move down", () => g.y++),
      b("W−", "Narrower", () => g.w--, g.w <= 1),
      b("W+", "Wider", () => g.w++, g.x + g.w >= 12),
      b("H−", "Shorter", () => g.h--, g.h <= 1),
      b("H+", "Taller", () => g.h++, g.h >= 24),
      b("Remove", "Remove", () => dash!.widgets.splice(dash!.widgets.indexOf(w), 1)),
    );
  }

  function addForm(): HTMLElement {
    const ferr = errorBox();
    const type = h("select", { name: "type" }, ...types.map(([v, l]) => h("option", { value: v }, l)));
    const title = h("input", { name: "widget-title" });
    const things = h("input", { name: "things", placeholder: "dev1, dev2" });
    const group = h("input", { name: "group" });
    const keys = h("input", { name: "keys", placeholder: "temp" });
    const windowIn = h("input", { name: "window", value: "1h" });
    const min = h("input", { name: "min", type: "number", step: "any", value: "0" });
    const max = h("input", { name: "max", type: "number", step: "any", value: "100" });
    const command = h("input", { name: "command", placeholder: "reboot" });
    const payload = h("textarea", { name: "payload", rows: 1, spellcheck: "false" }, "{}");
    const width = h("input", { name: "w", type: "number", min: 1, max: 12, value: "6" });
    const height = h("input", { name: "h", type: "number", min: 1, max: 24, value: "4" });
    const only: Record<string, HTMLElement[]> = {
      timeseries: [things, group, keys, windowIn],
      latest: [things, group, keys],
      gauge: [things, keys, min, max],
      map: [things, group, keys],
      alarms: [things, group],
      command: [things, command, payload],
    };
    const fields = new Map<HTMLElement, HTMLElement>();
    const f = (label: string, input: HTMLElement, hint?: string) => {
      const el = field(label, input, hint);
      fields.set(input, el);
      return el;
    };
    const showFields = () => {
      for (const [input, el] of fields) el.hidden = ![title, width, height].includes(input as any) && !only[type.value].includes(input);
    };
    type.addEventListener("change", showFields);
    const form = h(
      "form",
      { class: "card", "aria-labelledby": "add-widget-h", "data-testid": "add-widget" },
      h("h2", { id: "add-widget-h" }, "Add a widget"),
      ferr.el,
      h("div", { class: "grid" },
        field("Type", type),
        f("Title", title),
        f("Things (comma-separated)", things),
        f("Group", group, "instead of things"),
        f("Keys (comma-separated)", keys, "map: latitude, longitude (default lat, lon)"),
        f("Window", windowIn, "e.g. 15m, 1h, 24h"),
        f("Minimum", min),
        f("Maximum", max),
        f("Command", command),
        f("Payload (JSON)", payload),
        f("Width (columns)", width),
        f("Height (rows)", height),
      ),
      h("button", { type: "submit" }, "Add widget"),
    );
    showFields();
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      ferr.hide();
      const list = (s: string) => s.split(",").map((x) => x.trim()).filter(Boolean);
      const t = type.value;
      const w: Widget = { id: nextID(t), type: t, grid: { x: 0, y: nextRow(), w: clamp(Number(width.value) || 6, 1, 12), h: clamp(Number(height.value) || 4, 1, 24) } };
      if (title.value.trim()) w.title = title.value.trim();
      const use = (input: HTMLElement) => only[t].includes(input);
      if (use(things) && list(things.value).length) w.things = list(things.value);
      if (use(group) && group.value.trim()) w.group = group.value.trim();
      if (use(keys) && list(keys.value).length) w.keys = list(keys.value);
      if (use(windowIn) && windowIn.value.trim()) w.window = windowIn.value.trim();
      if (use(min)) {
        w.min = Number(min.value);
        w.max = Number(max.value);
      }
      if (use(command)) {
        w.command = command.value.trim();
        try {
          w.payload = JSON.parse(payload.value || "null");
        } catch (e) {
          ferr.show(`Payload is not valid JSON: ${(e as Error).message}`);
          return;
        }
      }
      change(() => dash!.widgets.push(w));
    });
    return form;
  }

  function nextID(type: string): string {
    const ids = new Set(dash!.widgets.map((w) => w.id));
    for (let i = 1; ; i++) if (!ids.has(`${type}${i}`)) return `${type}${i}`;
  }
  function nextRow(): number {
    return dash!.widgets.reduce((m, w) => Math.max(m, w.grid.y + w.grid.h), 0);
  }

  // --- data ---
  const loaders = new Map<string, (live?: boolean) => Promise<void>>();
  // refresh reloads the widgets: all of them (after a render, a
  // reconnect, lost events), or on the poll only those the stream does
  // not keep current (all while it is lost).
  async function refresh(all = false): Promise<void> {
    window.clearTimeout(timer);
    const live = (w: Widget) => stream !== null && !streamLost && (liveTypes.has(w.type) || w.type === "alarms");
    await Promise.all((dash?.widgets ?? []).filter((w) => all || !live(w)).map((w) => loaders.get(w.id)?.()));
    if (!stopped) timer = window.setTimeout(() => refresh(), pollMS);
  }

  const groupCache = new Map<string, Promise<string[]>>();
  function targets(w: Widget): Promise<string[]> {
    if (w.things?.length) return Promise.resolve(w.things);
    if (!w.group) return Promise.resolve([]);
    let p = groupCache.get(w.group);
    if (!p) {
      p = get<List<{ name: string }>>(`/groups/${enc(w.group)}/things?limit=100`).then((l) => l.items.map((t) => t.name));
      groupCache.set(w.group, p);
    }
    return p;
  }

  async function loadWidget(w: Widget, body: HTMLElement, live = false): Promise<void> {
    try {
      switch (w.type) {
        case "timeseries":
          return await timeseries(w, body);
        case "latest":
          return await latest(w, body, live);
        case "gauge":
          return await gauge(w, body, live);
        case "map":
          return await mapWidget(w, body);
        case "alarms":
          return await alarms(w, body);
        case "command":
          return commandButton(w, body);
      }
    } catch (e) {
      clear(body, h("p", { class: "error", role: "alert" }, e instanceof Error ? e.message : String(e)));
    }
  }

  const charts = new Map<string, uPlot>();
  async function timeseries(w: Widget, body: HTMLElement): Promise<void> {
    const things = await targets(w);
    const ms = windowMS(w.window ?? "1h");
    const from = Date.now() - ms;
    const list = await get<List<Point>>(`/telemetry?things=${things.map(enc).join(",")}&keys=${(w.keys ?? []).map(enc).join(",")}&from=${from}&limit=10000`);
    const names: string[] = [];
    for (const t of things) for (const k of w.keys ?? []) names.push(`${t} ${k}`);
    const index = new Map(names.map((n, i) => [n, i]));
    const xsSet = new Set<number>();
    for (const p of list.items) if (typeof p.value === "number") xsSet.add(p.ts / 1000);
    const xs = [...xsSet].sort((a, b) => a - b);
    const at = new Map(xs.map((x, i) => [x, i]));
    const ys: (number | null)[][] = names.map(() => xs.map(() => null));
    for (const p of list.items) {
      const i = index.get(`${p.thing} ${p.key}`);
      if (i === undefined || typeof p.value !== "number") continue;
      ys[i][at.get(p.ts / 1000)!] = p.value;
    }
    let fig = body.querySelector("figure") as HTMLElement | null;
    let u = charts.get(w.id);
    if (!fig || !u || u.series.length !== names.length + 1) {
      u?.destroy();
      fig = h("figure", { class: "chart", "data-testid": `chart-${w.id}`, role: "img", "aria-label": `${w.keys?.join(", ")} of ${things.join(", ")} over ${w.window ?? "1h"}` });
      clear(body, fig);
      const width = Math.max(200, body.clientWidth - 8);
      const height = Math.max(100, body.clientHeight - 50);
      u = new uPlot(
        {
          width,
          height,
          scales: { x: { time: true, range: () => [(Date.now() - ms) / 1000, Date.now() / 1000] } },
          series: [{}, ...names.map((n, i) => ({ label: n, stroke: palette[i % palette.length], width: 2, spanGaps: true, points: { show: true, size: 4 } }))],
          legend: { show: true, live: false },
          cursor: { y: false },
        },
        [xs, ...ys] as uPlot.AlignedData,
        fig,
      );
      (fig as any).uplot = u; // for the browser tests
      charts.set(w.id, u);
      cleanups.push(() => {
        u!.destroy();
        charts.delete(w.id);
      });
    } else {
      u.setData([xs, ...ys] as uPlot.AlignedData);
    }
  }

  // fetched keeps what GET .../telemetry/latest answered last: a live
  // update (cachedOnly) renders from it and the stream, with no request.
  const fetched = new Map<string, Point>();
  async function latestValues(things: string[], keys: string[], live = false): Promise<Map<string, Point>> {
    const out = new Map<string, Point>();
    await Promise.all(
      things.map(async (t) => {
        if (live) {
          for (const k of keys) {
            const p = fetched.get(`${t} ${k}`);
            if (p) out.set(`${t} ${k}`, p);
          }
          return;
        }
        const l = await get<List<Point>>(`/things/${enc(t)}/telemetry/latest${keys.length ? "?keys=" + keys.map(enc).join(",") : ""}`);
        for (const p of l.items) out.set(`${t} ${p.key}`, p), fetched.set(`${t} ${p.key}`, p);
      }),
    );
    // What the stream brought may be newer than what was stored yet.
    for (const t of things) for (const k of keys) {
      const p = liveVals.get(`${t} ${k}`);
      const o = out.get(`${t} ${k}`);
      if (p && (!o || p.ts >= o.ts)) out.set(`${t} ${k}`, p);
    }
    return out;
  }

  async function latest(w: Widget, body: HTMLElement, live: boolean): Promise<void> {
    const things = await targets(w);
    const keys = w.keys ?? [];
    const vals = await latestValues(things, keys, live);
    clear(
      body,
      tableWrap(h("table", { "data-testid": `latest-${w.id}` },
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Thing"), ...keys.map((k) => h("th", { scope: "col" }, k)))),
        h("tbody", {}, ...things.map((t) => h("tr", {},
          h("th", { scope: "row" }, h("a", { href: `/things/${enc(t)}` }, t)),
          ...keys.map((k) => {
            const p = vals.get(`${t} ${k}`);
            return h("td", { "data-thing": t, "data-key": k, title: p ? fmtTime(p.ts) : "" }, p ? String(p.value) : "–");
          }),
        ))),
      )),
    );
  }

  async function gauge(w: Widget, body: HTMLElement, live: boolean): Promise<void> {
    const [t] = w.things ?? [];
    const [k] = w.keys ?? [];
    const vals = await latestValues([t], [k], live);
    const p = vals.get(`${t} ${k}`);
    const v = typeof p?.value === "number" ? p.value : null;
    const min = w.min ?? 0;
    const max = w.max ?? 100;
    const frac = v === null ? 0 : Math.min(1, Math.max(0, (v - min) / (max - min)));
    // A half-circle arc from min (left) to max (right).
    const a = Math.PI * (1 - frac);
    const x = 60 + 50 * Math.cos(a);
    const y = 60 - 50 * Math.sin(a);
    const svg = `<svg viewBox="0 0 120 70" class="gauge" aria-hidden="true"><path d="M10 60 A50 50 0 0 1 110 60" class="track"/>` +
      (v === null ? "" : `<path d="M10 60 A50 50 0 0 1 ${x.toFixed(2)} ${y.toFixed(2)}" class="value"/>`) + `</svg>`;
    const fig = h("div", { class: "gauge-box" });
    fig.innerHTML = svg;
    clear(
      body,
      fig,
      h("meter", { min, max, value: v ?? min, "aria-label": `${k} of ${t}` }),
      h("p", { class: "num", "data-testid": `gauge-${w.id}` }, v === null ? "–" : String(v), h("small", { class: "muted" }, ` ${k} (${min} – ${max})`)),
    );
  }

  async function mapWidget(w: Widget, body: HTMLElement): Promise<void> {
    const things = await targets(w);
    const [latKey, lonKey] = w.keys?.length === 2 ? w.keys : ["lat", "lon"];
    const vals = await latestValues(things, [latKey, lonKey]);
    const pts: { t: string; lat: number; lon: number }[] = [];
    for (const t of things) {
      const la = vals.get(`${t} ${latKey}`)?.value;
      const lo = vals.get(`${t} ${lonKey}`)?.value;
      if (typeof la === "number" && typeof lo === "number" && Math.abs(la) <= 90 && Math.abs(lo) <= 180) pts.push({ t, lat: la, lon: lo });
    }
    if (pts.length === 0) {
      clear(body, h("p", { class: "muted" }, `No positions (${latKey}, ${lonKey}) reported yet.`));
      return;
    }
    // A plain scatter of lat/lon, scaled to the positions' box.
    let [minLat, maxLat, minLon, maxLon] = [90, -90, 180, -180];
    for (const p of pts) {
      minLat = Math.min(minLat, p.lat);
      maxLat = Math.max(maxLat, p.lat);
      minLon = Math.min(minLon, p.lon);
      maxLon = Math.max(maxLon, p.lon);
    }
    const pad = 0.001;
    const sx = (lon: number) => 10 + (280 * (lon - minLon + pad)) / (maxLon - minLon + 2 * pad);
    const sy = (lat: number) => 10 + (180 * (maxLat - lat + pad)) / (maxLat - minLat + 2 * pad);
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 300 200");
    svg.setAttribute("class", "map");
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", `Positions of ${plural(pts.length, "thing")}`);
    for (const p of pts) {
      const c = document.createElementNS(ns, "circle");
      c.setAttribute("cx", sx(p.lon).toFixed(1));
      c.setAttribute("cy", sy(p.lat).toFixed(1));
      c.setAttribute("r", "5");
      c.setAttribute("data-thing", p.t);
      const title = document.createElementNS(ns, "title");
      title.textContent = `${p.t}: ${p.lat}, ${p.lon}`;
      c.append(title);
      svg.append(c);
    }
    clear(body, svg);
  }

  async function alarms(w: Widget, body: HTMLElement): Promise<void> {
    const things = new Set(await targets(w));
    const scoped = !!(w.things?.length || w.group);
    const list = await get<List<{ id: string; type: string; thing: string; severity: string; status: string; lastAt: string; count: number }>>("/alarms?status=active&limit=100");
    const items = list.items.filter((a) => !scoped || things.has(a.thing));
    clear(
      body,
      items.length === 0
        ? h("p", { class: "muted" }, "No active alarms.")
        : h("ul", { class: "alarm-list", "data-testid": `alarms-${w.id}` }, ...items.map((a) =>
            h("li", {}, h("span", { class: `sev sev-${a.severity}` }, a.severity), " ", a.type, " on ", h("a", { href: `/things/${enc(a.thing)}` }, a.thing), a.count > 1 ? ` ×${a.count}` : "", h("time", {}, " " + fmtTime(a.lastAt))),
          )),
    );
  }

  function commandButton(w: Widget, body: HTMLElement): void {
    if (body.querySelector("button")) return; // keep what it showed last
    if (!canOperate()) {
      clear(body, h("p", { class: "muted" }, `${w.command} to ${plural(w.things?.length ?? 0, "thing")}: operators send it.`));
      return;
    }
    const out = h("p", { role: "status", "aria-live": "polite", class: "muted" });
    const button = h("button", { type: "button", "data-testid": `command-${w.id}` }, `Send ${w.command} to ${plural(w.things?.length ?? 0, "thing")}`);
    button.addEventListener("click", async () => {
      button.disabled = true;
      out.textContent = "Sending…";
      const results = await Promise.allSettled((w.things ?? []).map((t) => post(`/things/${enc(t)}/commands`, { name: w.command, payload: w.payload ?? null })));
      const failed = results.filter((r) => r.status === "rejected") as PromiseRejectedResult[];
      out.textContent = failed.length === 0 ? `Sent to ${plural(results.length, "thing")}.` : `${failed.length} of ${results.length} failed: ${failed[0].reason?.message ?? failed[0].reason}`;
      button.disabled = false;
    });
    clear(body, button, out);
  }

  (async () => {
    try {
      dash = await get<Dashboard>(`/dashboards/${enc(name)}`);
      render();
    } catch (e) {
      err.show(e);
    }
  })();

  return () => {
    stopped = true;
    window.clearTimeout(timer);
    stream?.close();
    stopConn();
    for (const t of pending.values()) window.clearTimeout(t);
    for (const c of cleanups.splice(0)) c();
    document.body.classList.remove("fullscreen");
    if (document.fullscreenElement) document.exitFullscreen?.().catch(() => {});
  };
}

const palette = ["#2a6cd6", "#d65a2a", "#2aa876", "#a62ad6", "#d6b42a", "#2ab5d6"];

function defaultTitle(w: Widget): string {
  const what = types.find(([t]) => t === w.type)?.[1] ?? w.type;
  if (w.type === "command") return `${w.command}`;
  return w.keys?.length ? `${what}: ${w.keys.join(", ")}` : what;
}

function windowMS(s: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(s);
  if (!m) return 3600_000;
  return Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3600_000 }[m[2] as "ms" | "s" | "m" | "h"];
}

function clamp(n: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, Math.round(n)));
}
