import { enc, events, get, List, post, Stream } from "./api";
import { clear, errorBox, field, fmtTime, h, ago, plural, tableWrap } from "./ui";
import { canOperate } from "./main";

// Alarms (docs/alarms.md): GET /alarms with filters and pages,
// POST /alarms/{id}/ack and /clear, and the event stream's "alarm" events.

export interface Alarm {
  id: string;
  type: string;
  thing: string;
  severity: string;
  status: string;
  details?: Record<string, unknown>;
  count: number;
  createdAt: string;
  lastAt: string;
  acknowledgedAt?: string;
  clearedAt?: string;
}

// AlarmEvent is the body of an event "alarm" (GET /events?alarms=1).
export interface AlarmEvent {
  event: "raised" | "acknowledged" | "cleared";
  time: string;
  alarm: Alarm;
}

export const severities = ["critical", "major", "minor", "warning"];

export function severityBadge(sev: string): HTMLElement {
  return h("span", { class: `badge sev sev-${sev}` }, sev);
}

// activeCounts counts the active alarms by severity (of one thing, or of
// all), reading pages of 1000 up to limit alarms.
export async function activeCounts(thing?: string, limit = 10_000): Promise<{ counts: Record<string, number>; more: boolean; items: Alarm[] }> {
  const counts: Record<string, number> = Object.fromEntries(severities.map((s) => [s, 0]));
  const items: Alarm[] = [];
  let cursor = "";
  for (;;) {
    const q = new URLSearchParams({ status: "active", limit: "1000" });
    if (thing) q.set("thing", thing);
    if (cursor) q.set("cursor", cursor);
    const page = await get<List<Alarm>>(`/alarms?${q}`);
    for (const a of page.items) {
      counts[a.severity] = (counts[a.severity] ?? 0) + 1;
      items.push(a);
    }
    if (!page.nextCursor) return { counts, more: false, items };
    if (items.length >= limit) return { counts, more: true, items };
    cursor = page.nextCursor;
  }
}

// alarmBadges shows the active alarms by severity ("2 critical 1 minor",
// or "No active alarms"), each a link to the alarms page filtered so.
// refresh reloads it (the caller follows the alarm events) and returns
// the active alarms it read.
export function alarmBadges(thing?: string): { el: HTMLElement; refresh: () => Promise<Alarm[]> } {
  const el = h("div", { class: "alarm-badges", "data-testid": "alarm-badges", "aria-live": "polite" }, "…");
  const refresh = async (): Promise<Alarm[]> => {
    try {
      const { counts, more, items } = await activeCounts(thing);
      const total = Object.values(counts).reduce((a, b) => a + b, 0);
      const base = thing ? `/alarms?thing=${enc(thing)}&status=active` : "/alarms?status=active";
      clear(
        el,
        total === 0
          ? h("span", { class: "badge on", "data-testid": "no-alarms" }, "No active alarms")
          : severities
              .filter((s) => counts[s] > 0)
              .map((s) =>
                h("a", { href: `${base}&severity=${s}`, class: `badge sev sev-${s}`, "data-testid": `alarms-${s}` }, `${counts[s]}${more ? "+" : ""} ${s}`),
              ),
      );
      return items;
    } catch (e) {
      clear(el, h("span", { class: "muted" }, e instanceof Error ? e.message : String(e)));
      return [];
    }
  };
  return { el, refresh };
}

// The alarms page: filters (status, severity, thing, type) in the URL,
// pages, Ack and Clear for operators, live: a new or changed alarm shows
// without a reload.
export function alarmsPage(main: HTMLElement): () => void {
  const err = errorBox();
  const params = new URLSearchParams(location.search);
  const status = h(
    "select",
    { name: "status" },
    h("option", { value: "active" }, "active"),
    h("option", { value: "acknowledged" }, "acknowledged"),
    h("option", { value: "open" }, "open (active or acknowledged)"),
    h("option", { value: "cleared" }, "cleared"),
    h("option", { value: "" }, "any"),
  );
  status.value = params.get("status") ?? "active";
  const severity = h("select", { name: "severity" }, h("option", { value: "" }, "any"), ...severities.map((s) => h("option", { value: s }, s)));
  severity.value = params.get("severity") ?? "";
  const thing = h("input", { type: "search", name: "thing", placeholder: "thing name", value: params.get("thing") ?? "" });
  const type = h("input", { type: "search", name: "type", placeholder: "alarm type", value: params.get("type") ?? "" });
  const filters = h(
    "form",
    { class: "filters", role: "search", "aria-label": "Filter alarms" },
    field("Status", status),
    field("Severity", severity),
    field("Thing", thing),
    field("Type", type),
    h("button", { type: "submit" }, "Filter"),
  );
  const badges = alarmBadges();
  const notice = h("p", { class: "muted", role: "status", "data-testid": "alarm-notice" });
  const tbody = h("tbody", { "data-testid": "alarms" });
  const pager = h("div", { class: "pager" });
  const cursors: string[] = [""];
  let page = 0;
  const pageSize = 25;
  clear(
    main,
    h("div", { class: "title" }, h("h1", {}, "Alarms"), badges.el),
    err.el,
    filters,
    notice,
    tableWrap(
      h(
        "table",
        { "aria-label": "Alarms" },
        h("thead", {}, h("tr", {}, ...["Severity", "Type", "Thing", "Status", "Count", "Last", "Since", ""].map((c) => h("th", { scope: "col" }, c)))),
        tbody,
      ),
    ),
    pager,
  );
  const first = () => {
    cursors.length = 1;
    page = 0;
    load();
  };
  filters.addEventListener("submit", (ev) => {
    ev.preventDefault();
    first();
  });
  status.addEventListener("change", first);
  severity.addEventListener("change", first);

  const query = (): URLSearchParams => {
    const p = new URLSearchParams();
    if (status.value) p.set("status", status.value);
    if (severity.value) p.set("severity", severity.value);
    if (thing.value.trim()) p.set("thing", thing.value.trim());
    if (type.value.trim()) p.set("type", type.value.trim());
    return p;
  };

  const act = async (a: Alarm, what: "ack" | "clear", btn: HTMLButtonElement) => {
    err.hide();
    btn.disabled = true;
    try {
      const after = await post<Alarm>(`/alarms/${enc(a.id)}/${what}`);
      notice.textContent = `${after.type} on ${after.thing} ${what === "ack" ? "acknowledged" : "cleared"}.`;
      load();
      badges.refresh();
    } catch (e) {
      err.show(e);
      btn.disabled = false;
    }
  };

  const row = (a: Alarm): HTMLElement => {
    const buttons: HTMLElement[] = [];
    if (canOperate()) {
      if (a.status === "active") {
        const b = h("button", { type: "button", class: "small", "aria-label": `Acknowledge ${a.type} on ${a.thing}` }, "Ack");
        b.addEventListener("click", () => act(a, "ack", b));
        buttons.push(b);
      }
      if (a.status !== "cleared") {
        const b = h("button", { type: "button", class: "small danger", "aria-label": `Clear ${a.type} on ${a.thing}` }, "Clear");
        b.addEventListener("click", () => act(a, "clear", b));
        buttons.push(b);
      }
    }
    const details = a.details && Object.keys(a.details).length ? JSON.stringify(a.details) : "";
    return h(
      "tr",
      { "data-alarm": a.id, "data-status": a.status, "data-thing": a.thing, "data-type": a.type },
      h("td", {}, severityBadge(a.severity)),
      h("td", {}, h("strong", {}, a.type), details ? h("div", { class: "muted details" }, h("small", {}, details.length > 160 ? details.slice(0, 160) + "…" : details)) : ""),
      h("td", {}, h("a", { href: `/things/${enc(a.thing)}` }, a.thing)),
      h("td", { class: `alarm-status ${a.status}` }, a.status, a.acknowledgedAt && a.status !== "active" ? h("small", { class: "muted" }, h("br"), `ack ${ago(a.acknowledgedAt)}`) : ""),
      h("td", { class: "num" }, String(a.count)),
      h("td", {}, h("time", { datetime: a.lastAt, title: fmtTime(a.lastAt) }, ago(a.lastAt))),
      h("td", {}, h("time", { datetime: a.createdAt, title: fmtTime(a.createdAt) }, fmtTime(a.createdAt))),
      h("td", { class: "actions" }, ...buttons),
    );
  };

  let loading = 0;
  async function load(): Promise<void> {
    const seq = ++loading;
    const p = query();
    history.replaceState(null, "", "/alarms" + (p.toString() ? "?" + p : ""));
    p.set("limit", String(pageSize));
    if (cursors[page]) p.set("cursor", cursors[page]);
    try {
      const list = await get<List<Alarm>>(`/alarms?${p}`);
      if (seq !== loading) return; // a newer load is on its way
      err.hide();
      if (list.nextCursor) cursors[page + 1] = list.nextCursor;
      else cursors.length = page + 1;
      clear(tbody, ...list.items.map(row));
      if (list.items.length === 0) clear(tbody, h("tr", {}, h("td", { colspan: 8, class: "muted" }, "No alarms match.")));
      const prev = h("button", { type: "button", disabled: page === 0 }, "Previous");
      prev.addEventListener("click", () => {
        page--;
        load();
      });
      const next = h("button", { type: "button", disabled: !cursors[page + 1] }, "Next");
      next.addEventListener("click", () => {
        page++;
        load();
      });
      clear(pager, prev, h("span", { class: "muted" }, `Page ${page + 1}`), next);
    } catch (e) {
      if (seq === loading) err.show(e);
    }
  }
  load();
  badges.refresh();

  // Live: an alarm event reloads the page shown (at most every 500 ms)
  // and says what happened.
  let liveTimer: number | undefined;
  const onAlarm = (e: AlarmEvent) => {
    if (e.event === "raised") notice.textContent = `New ${e.alarm.severity} alarm ${e.alarm.type} on ${e.alarm.thing}.`;
    if (liveTimer !== undefined) return;
    liveTimer = window.setTimeout(() => {
      liveTimer = undefined;
      load();
      badges.refresh();
    }, 500);
  };
  const es: Stream = events("alarms=1", { alarm: onAlarm }, () => {
    load();
    badges.refresh();
  });
  return () => {
    es.close();
    window.clearTimeout(liveTimer);
  };
}

// thingAlarms is the thing page's alarm card: its active alarms by
// severity and a list of them. The page feeds it the alarm events of its
// own stream (onAlarm; a browser holds few connections per server, so a
// page opens as few streams as it can) and calls refresh after a loss.
export function thingAlarms(name: string): { el: HTMLElement; refresh: () => void; onAlarm: (e: AlarmEvent) => void; close: () => void } {
  const badges = alarmBadges(name);
  const list = h("ul", { class: "events", "data-testid": "thing-alarms" });
  const el = h(
    "section",
    { class: "card", "aria-labelledby": "alarms-h" },
    h("div", { class: "title" }, h("h2", { id: "alarms-h" }, "Alarms"), badges.el),
    list,
    h("p", {}, h("a", { href: `/alarms?thing=${enc(name)}&status=` }, "All alarms of this thing")),
  );
  const refresh = async () => {
    const items = await badges.refresh();
    clear(
      list,
      ...items.slice(0, 20).map((a) =>
        h("li", { "data-alarm": a.id }, severityBadge(a.severity), " ", h("strong", {}, a.type), ` ${plural(a.count, "time")}, last `, h("time", { datetime: a.lastAt }, ago(a.lastAt))),
      ),
    );
  };
  refresh();
  let timer: number | undefined;
  return {
    el,
    refresh,
    onAlarm(e: AlarmEvent) {
      if (e.alarm.thing !== name || timer !== undefined) return;
      timer = window.setTimeout(() => {
        timer = undefined;
        refresh();
      }, 300);
    },
    close() {
      window.clearTimeout(timer);
    },
  };
}
